//! Known-answer tests: RAKP / session-key formulas written out independently with the hmac and
//! sha crates, and a real ipmitool ↔ ipmi_sim session captured on loopback
//! (`testdata/README.md`).

use hmac::{Hmac, Mac};

use crate::crypto::{self, CipherSuite, Hash, RakpParams};
use crate::session::Active;
use crate::wire::{self, Packet};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn capture(text: &str, name: &str) -> Vec<u8> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("{name} missing"));
    hex(line.split(" = ").nth(1).expect("value"))
}

fn payload(pkt: &[u8]) -> Vec<u8> {
    match wire::parse_packet(pkt).expect("parse") {
        Packet::V20(p) => p.payload.to_vec(),
        Packet::V15(p) => p.msg.to_vec(),
    }
}

fn arr16(b: &[u8]) -> [u8; 16] {
    b.try_into().expect("16 bytes")
}

fn sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The spec formulas (IPMI v2.0 §13.31, 13.32), spelled out byte by byte.
fn check_formulas(hash: Hash, h: fn(&[u8], &[u8]) -> Vec<u8>, trunc: usize) {
    let user = b"admin";
    let pw = b"password";
    let mut kuid = [0u8; 20];
    kuid[..pw.len()].copy_from_slice(pw);
    let p = RakpParams {
        sidm: 0xa0a2_a3a4,
        sidc: 0x0000_0204,
        rm: [0x11; 16],
        rc: [0x22; 16],
        guid: [0x33; 16],
        role: 0x14,
        username: user,
    };
    let mut m = vec![0xa4, 0xa3, 0xa2, 0xa0, 0x04, 0x02, 0, 0];
    m.extend([0x11; 16]);
    m.extend([0x22; 16]);
    m.extend([0x33; 16]);
    m.extend([0x14, 5]);
    m.extend(user);
    assert_eq!(crypto::rakp2_auth_code(hash, &kuid, &p), h(&kuid, &m));
    // Unpadded password as key gives the same HMAC (HMAC zero-pads keys to the block size).
    assert_eq!(crypto::rakp2_auth_code(hash, &kuid, &p), h(pw, &m));

    let mut m3 = vec![0x22; 16];
    m3.extend([0xa4, 0xa3, 0xa2, 0xa0, 0x14, 5]);
    m3.extend(user);
    assert_eq!(crypto::rakp3_auth_code(hash, &kuid, &p), h(&kuid, &m3));

    let mut ms = vec![0x11; 16];
    ms.extend([0x22; 16]);
    ms.extend([0x14, 5]);
    ms.extend(user);
    let sik = h(&kuid, &ms);
    assert_eq!(crypto::sik(hash, &kuid, &p), sik);
    let k1 = h(&sik, &[1; 20]);
    let k2 = h(&sik, &[2; 20]);
    assert_eq!(crypto::k1(hash, &sik), k1);
    assert_eq!(crypto::k2(hash, &sik), k2);

    let mut m4 = vec![0x11; 16];
    m4.extend([0x04, 0x02, 0, 0]);
    m4.extend([0x33; 16]);
    assert_eq!(
        crypto::rakp4_icv(hash, &sik, &p),
        h(&sik, &m4)[..trunc].to_vec()
    );
    assert_eq!(
        crypto::integrity_code(hash, &k1, b"xyz"),
        h(&k1, b"xyz")[..trunc].to_vec()
    );

    let suite = if hash == Hash::Sha1 {
        CipherSuite::SUITE_3
    } else {
        CipherSuite::SUITE_17
    };
    let a = Active::new(suite, p.sidm, p.sidc, &sik);
    assert_eq!(a.keys(), (&k1[..], &k2[..]));
}

#[test]
fn suite3_formulas() {
    check_formulas(Hash::Sha1, sha1, 12);
}

#[test]
fn suite17_formulas() {
    check_formulas(Hash::Sha256, sha256, 16);
}

/// ipmitool -C 3 against ipmi_sim: both peers' auth codes, and ipmitool's first encrypted
/// request reproduced byte for byte.
#[test]
fn ipmitool_ipmi_sim_capture_suite3() {
    let t = include_str!("../testdata/ipmitool-c3-ipmi_sim.txt");
    let osreq = payload(&capture(t, "open_session_req"));
    let osrsp = payload(&capture(t, "open_session_rsp"));
    let r1 = payload(&capture(t, "rakp1"));
    let r2 = payload(&capture(t, "rakp2"));
    let r3 = payload(&capture(t, "rakp3"));
    let r4 = payload(&capture(t, "rakp4"));
    let kuid = crypto::kuid(b"password");
    let p = RakpParams {
        sidm: u32::from_le_bytes(osreq[4..8].try_into().expect("4")),
        sidc: u32::from_le_bytes(osrsp[8..12].try_into().expect("4")),
        rm: arr16(&r1[8..24]),
        rc: arr16(&r2[8..24]),
        guid: arr16(&r2[24..40]),
        role: r1[24],
        username: &r1[28..],
    };
    assert_eq!(p.username, b"admin");
    assert_eq!(p.role, 0x14);
    let h = Hash::Sha1;
    assert_eq!(
        crypto::rakp2_auth_code(h, &kuid, &p),
        r2[40..].to_vec(),
        "ipmi_sim RAKP2"
    );
    assert_eq!(
        crypto::rakp3_auth_code(h, &kuid, &p),
        r3[8..].to_vec(),
        "ipmitool RAKP3"
    );
    let sik = crypto::sik(h, &kuid, &p);
    assert_eq!(
        crypto::rakp4_icv(h, &sik, &p),
        r4[8..].to_vec(),
        "ipmi_sim RAKP4"
    );

    // ipmitool's first authenticated request: decrypt, then re-seal with its IV and sequence.
    let req1 = capture(t, "req1");
    let Ok(Packet::V20(v)) = wire::parse_packet(&req1) else {
        panic!("req1")
    };
    assert_eq!((v.seq, v.session_id), (3, p.sidc));
    let iv = arr16(&v.payload[..16]);
    let mut active = Active::new(CipherSuite::SUITE_3, p.sidm, p.sidc, &sik);
    let (_, k2) = active.keys();
    let msg = crypto::aes_cbc_decrypt(k2, v.payload).expect("decrypt");
    // Set Session Privilege Level (App 0x3B) to Administrator.
    assert_eq!(&msg[..3], &[0x20, 0x18, 0xc8]);
    assert_eq!((msg[5], msg[6]), (0x3b, 0x04));
    assert_eq!(wire::checksum(&msg[3..]), 0);
    active.set_out_seq_for_test(2);
    let mut fill = |b: &mut [u8]| b.copy_from_slice(&iv[..b.len()]);
    assert_eq!(
        active.seal(&msg, &mut fill),
        req1,
        "re-sealed request differs"
    );

    // Every later ipmitool request carries a valid AuthCode under our K1, and every ipmi_sim
    // reply opens (integrity, window, decryption) and parses.
    let (k1, _) = active.keys();
    let k1 = k1.to_vec();
    let k2v = active.keys().1.to_vec();
    for i in 1..=7 {
        let req = capture(t, &format!("req{i}"));
        let n = req.len() - 12;
        assert_eq!(
            crypto::integrity_code(h, &k1, &req[4..n]),
            req[n..].to_vec()
        );
        let rsp = capture(t, &format!("rsp{i}"));
        let m = active.open(&rsp).expect("open reply");
        let r = wire::parse_response(&m).expect("response");
        let q = crypto::aes_cbc_decrypt(
            &k2v,
            &wire::parse_packet(&req)
                .map(|p| match p {
                    Packet::V20(v) => v.payload.to_vec(),
                    Packet::V15(_) => Vec::new(),
                })
                .expect("req"),
        )
        .expect("decrypt req");
        // ipmitool: Set Session Privilege, two group-extension probes (ipmi_sim: 0xc1), Get
        // Device ID, one more probe, Get Chassis Status, Close Session.
        let want = [
            (0x3b, 0),
            (0x3e, 0xc1),
            (0x01, 0),
            (0x00, 0xc1),
            (0x00, 0xc1),
            (0x01, 0),
            (0x3c, 0),
        ];
        assert_eq!((q[5], r.completion), want[i - 1], "req{i}");
        assert_eq!((r.cmd, r.rq_seq), (q[5], q[4] >> 2));
    }
    // Replaying a reply is rejected by the window.
    let rsp7 = capture(t, "rsp7");
    assert!(active.open(&rsp7).is_err());
}
