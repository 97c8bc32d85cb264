//! The full client state machine against the in-test fake BMC, on a fake clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{FakeBmc, Harness, SIDC};
use rackboot_ipmi::{
    BootDevice, BootFlags, ChassisControl, CipherSuite, ClientConfig, Command, IpmiError,
    IpmiRequest, Response,
};

fn cfg() -> ClientConfig {
    ClientConfig::new("admin", "password")
}

#[test]
fn suite17_full_flow() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[3, 17]));
    let Ok(Response::DeviceId(d)) = h.run(Command::GetDeviceId) else {
        panic!("device id")
    };
    assert_eq!((d.manufacturer_id, d.product_id), (0x157, 0x1234));
    assert_eq!(h.client.session_suite(), Some(CipherSuite::SUITE_17));
    let Ok(Response::ChassisStatus(s)) = h.run(Command::GetChassisStatus) else {
        panic!("status")
    };
    assert!(!s.power_on);
    assert_eq!(s.restore_policy, 2);
    let on = Command::ChassisControl(ChassisControl::PowerUp);
    assert_eq!(h.run(on), Ok(Response::Done));
    assert!(h.bmc.power_on);
    let Ok(Response::ChassisStatus(s)) = h.run(Command::GetChassisStatus) else {
        panic!("status")
    };
    assert!(s.power_on);
    let set = Command::SetBootFlags(BootFlags::pxe_once(true));
    assert_eq!(h.run(set), Ok(Response::Done));
    assert_eq!(h.bmc.boot_flags, [0xa0, 0x04, 0, 0, 0]);
    let Ok(Response::BootFlags(f)) = h.run(Command::GetBootFlags) else {
        panic!("boot flags")
    };
    assert!(f.valid && f.efi && !f.persistent && f.device == BootDevice::Pxe);
    let off = Command::ChassisControl(ChassisControl::SoftShutdown);
    assert_eq!(h.run(off), Ok(Response::Done));
    assert!(!h.bmc.power_on);
    assert_eq!(h.client.close(h.now), Ok(()));
    let closed = h.client.poll_result().is_none();
    assert!(closed, "close needs a round trip");
    while let Some(d) = h.client.poll_transmit() {
        for r in h.bmc.handle(&d) {
            h.client.handle_datagram(&r, h.now);
        }
    }
    assert_eq!(h.client.poll_result(), Some(Ok(Response::SessionClosed)));
    assert_eq!(h.client.session_suite(), None);

    // One session for everything; Set Session Privilege first; the boot-flag sequence as
    // ipmitool sends it; session sequence numbers strictly increasing.
    assert_eq!(h.bmc.sessions_opened, 1);
    let cmds: Vec<(u8, u8, Vec<u8>)> = h
        .bmc
        .seen
        .iter()
        .map(|s| (s.netfn, s.cmd, s.data.clone()))
        .collect();
    assert_eq!(cmds[0], (6, 0x3b, vec![4]));
    let boot: Vec<_> = cmds
        .iter()
        .filter(|c| c.1 == 0x08)
        .map(|c| c.2.clone())
        .collect();
    assert_eq!(
        boot,
        vec![
            vec![0, 1],
            vec![4, 1, 1],
            vec![5, 0xa0, 0x04, 0, 0, 0],
            vec![0, 2],
            vec![0, 0]
        ]
    );
    assert_eq!(cmds.last(), Some(&(6, 0x3c, SIDC.to_le_bytes().to_vec())));
    let seqs: Vec<u32> = h.bmc.seen.iter().map(|s| s.session_seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert_eq!(h.elapsed(), Duration::ZERO);
    assert_eq!(h.client.stats().retransmits, 0);
}

#[test]
fn suite3_only_bmc_refusal_falls_back_immediately() {
    for short in [true, false] {
        let mut bmc = FakeBmc::new(&[3]);
        bmc.short_refusal = short;
        let mut h = Harness::new(cfg(), bmc);
        assert!(matches!(
            h.run(Command::GetChassisStatus),
            Ok(Response::ChassisStatus(_))
        ));
        assert_eq!(h.client.session_suite(), Some(CipherSuite::SUITE_3));
        assert_eq!(h.elapsed(), Duration::ZERO);
    }
}

#[test]
fn silent_suite17_falls_back_after_retries() {
    let mut bmc = FakeBmc::new(&[3, 17]);
    bmc.silent_suites = vec![17];
    let mut h = Harness::new(cfg(), bmc);
    assert!(matches!(
        h.run(Command::GetChassisStatus),
        Ok(Response::ChassisStatus(_))
    ));
    assert_eq!(h.client.session_suite(), Some(CipherSuite::SUITE_3));
    assert_eq!(h.elapsed(), Duration::from_secs(4));
}

#[test]
fn no_common_suite_is_a_typed_error() {
    let mut cfgc = cfg();
    cfgc.suites = vec![CipherSuite::SUITE_17];
    let mut h = Harness::new(cfgc, FakeBmc::new(&[3]));
    match h.run(Command::GetChassisStatus) {
        Err(IpmiError::NoCipherSuite(m)) => {
            assert!(m.contains("invalid authentication algorithm"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_password_and_user_are_auth_failed() {
    for suite in [3, 17] {
        let mut h = Harness::new(ClientConfig::new("admin", "wrong"), FakeBmc::new(&[suite]));
        let e = h.run(Command::GetChassisStatus).unwrap_err();
        assert!(matches!(e, IpmiError::AuthFailed(_)), "{e:?}");
        assert!(e.to_string().contains("wrong username or password"));
        // The half-open session was released with a RAKP3 error status.
        assert_eq!(h.bmc.rakp3_status, vec![0x0f]);
        assert!(h.bmc.session.is_none());

        let mut h = Harness::new(
            ClientConfig::new("root", "password"),
            FakeBmc::new(&[suite]),
        );
        let e = h.run(Command::GetChassisStatus).unwrap_err();
        assert!(e.to_string().contains("unauthorized name"), "{e}");
    }
}

#[test]
fn bmc_rejecting_rakp3_is_auth_failed() {
    // The BMC refuses our RAKP3 auth code: RAKP4 with status 0x0f (8-byte error payload).
    let mut c = cfg();
    c.suites = vec![CipherSuite::SUITE_3];
    let mut h2 = Harness::new(c, FakeBmc::new(&[3]));
    // Flip the RAKP4 status the BMC sends.
    h2.tamper = Some(Box::new(|mut r: Vec<u8>| {
        if r.get(5) == Some(&0x15) {
            r[17] = 0x0f;
            r.truncate(24);
            r[14] = 8;
        }
        vec![r]
    }));
    let e = h2.run(Command::GetChassisStatus).unwrap_err();
    assert!(
        matches!(e, IpmiError::AuthFailed(ref m) if m.contains("RAKP4")),
        "{e:?}"
    );
}

#[test]
fn dropped_reply_is_retried_with_new_session_seq_same_rqseq() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[3, 17]));
    h.run(Command::GetChassisStatus).unwrap();
    h.bmc.drop_replies = 1;
    let n = h.bmc.seen.len();
    let t = h.elapsed();
    let on = Command::ChassisControl(ChassisControl::PowerUp);
    assert_eq!(h.run(on), Ok(Response::Done));
    assert_eq!(h.elapsed() - t, Duration::from_secs(1));
    let tries = &h.bmc.seen[n..];
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0].rq_seq, tries[1].rq_seq);
    assert_eq!(tries[1].session_seq, tries[0].session_seq + 1);
    assert_eq!(h.client.stats().retransmits, 1);
}

#[test]
fn dropped_handshake_reply_is_retried() {
    let mut bmc = FakeBmc::new(&[17]);
    bmc.drop_replies = 3; // auth caps, then two Open Session Responses
    let mut h = Harness::new(cfg(), bmc);
    assert!(h.run(Command::GetChassisStatus).is_ok());
    assert_eq!(h.elapsed(), Duration::from_secs(3));
}

#[test]
fn silent_bmc_times_out_after_retries() {
    let mut bmc = FakeBmc::new(&[3, 17]);
    bmc.mute = true;
    let mut h = Harness::new(cfg(), bmc);
    match h.run(Command::GetChassisStatus) {
        Err(IpmiError::Timeout { what, attempts, .. }) => {
            assert_eq!(what, "Get Channel Authentication Capabilities");
            assert_eq!(attempts, 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.elapsed(), Duration::from_secs(4));
    assert_eq!(h.client_sent.len(), 4);
    assert!(h.client_sent.iter().all(|p| *p == h.client_sent[0]));
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn session_that_stops_answering_reestablishes_once_then_times_out() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[17]));
    h.run(Command::GetChassisStatus).unwrap();
    h.bmc.mute = true;
    let t = h.elapsed();
    let e = h.run(Command::GetChassisStatus).unwrap_err();
    // 4 in-session attempts, then 4 attempts of a new Get Channel Auth Capabilities.
    assert!(matches!(e, IpmiError::Timeout { .. }), "{e:?}");
    assert_eq!(h.elapsed() - t, Duration::from_secs(8));

    let mut c = cfg();
    c.reestablish = false;
    c.retries = 1;
    c.timeout = Duration::from_millis(500);
    let mut h = Harness::new(c, FakeBmc::new(&[17]));
    h.run(Command::GetChassisStatus).unwrap();
    h.bmc.mute = true;
    let t = h.elapsed();
    let e = h.run(Command::GetDeviceId).unwrap_err();
    assert_eq!(
        e,
        IpmiError::Timeout {
            what: "Get Device ID",
            attempts: 2,
            per_attempt: Duration::from_millis(500)
        }
    );
    assert_eq!(h.elapsed() - t, Duration::from_secs(1));
}

#[test]
fn bmc_that_forgot_the_session_gets_a_new_one() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[17]));
    h.run(Command::GetChassisStatus).unwrap();
    h.bmc.session = None; // BMC rebooted / session expired: in-session requests go unanswered
    let r = h.run(Command::ChassisControl(ChassisControl::PowerCycle));
    assert_eq!(r, Ok(Response::Done));
    assert_eq!(h.bmc.sessions_opened, 2);
    assert!(h.bmc.power_on);
}

#[test]
fn forged_and_garbage_replies_are_dropped() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[17]));
    h.run(Command::GetChassisStatus).unwrap();
    let old_reply = h.bmc.sent.last().cloned().unwrap();
    h.tamper = Some(Box::new(move |r: Vec<u8>| {
        let mut wrong_sid = r.clone();
        wrong_sid[6] ^= 0x01;
        let mut bad_mac = r.clone();
        let n = bad_mac.len();
        bad_mac[n - 1] ^= 0x80;
        let mut bad_payload = r.clone();
        bad_payload[20] ^= 0x01;
        vec![
            wrong_sid,
            bad_mac,
            bad_payload,
            vec![0xde, 0xad],
            r[..r.len() - 3].to_vec(),
            old_reply.clone(), // replay of an earlier genuine reply
            r,
        ]
    }));
    let Ok(Response::ChassisStatus(_)) = h.run(Command::GetChassisStatus) else {
        panic!("status")
    };
    let s = h.client.stats();
    assert_eq!(s.wrong_session_id, 1);
    assert_eq!(s.bad_integrity, 2); // flipped MAC, flipped ciphertext
    assert_eq!(s.malformed, 2); // 2 bytes of garbage, truncated AuthCode
    assert_eq!(s.out_of_window, 1);
    assert_eq!(s.retransmits, 0);
}

#[test]
fn completion_codes_are_typed() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[17]));
    let raw = Command::Raw(IpmiRequest {
        netfn: 0x2c,
        cmd: 0x00,
        data: vec![0xdc],
    });
    assert_eq!(
        h.run(raw),
        Err(IpmiError::Completion {
            code: 0xc1,
            meaning: "invalid command"
        })
    );
    // Boot flags: the optional steps may fail, parameter 5 may not (and set-complete still runs).
    h.bmc.boot_param_cc = vec![(0, 0x80), (4, 0xc1)];
    let set = Command::SetBootFlags(BootFlags::pxe_once(false));
    assert_eq!(h.run(set.clone()), Ok(Response::Done));
    assert_eq!(h.bmc.boot_flags, [0x80, 0x04, 0, 0, 0]);
    h.bmc.boot_param_cc = vec![(5, 0xcc)];
    let n = h.bmc.seen.len();
    let e = h.run(set).unwrap_err();
    assert!(
        matches!(e, IpmiError::Completion { code: 0xcc, .. }),
        "{e:?}"
    );
    let params: Vec<Vec<u8>> = h.bmc.seen[n..].iter().map(|s| s.data.clone()).collect();
    assert_eq!(
        params,
        vec![
            vec![0, 1],
            vec![4, 1, 1],
            vec![5, 0x80, 4, 0, 0, 0],
            vec![0, 0]
        ]
    );
}

#[test]
fn an_operator_account_gets_an_operator_session() {
    let mut bmc = FakeBmc::new(&[17]);
    bmc.max_privilege = 3;
    let mut h = Harness::new(cfg(), bmc);
    assert_eq!(
        h.run(Command::ChassisControl(ChassisControl::PowerUp)),
        Ok(Response::Done)
    );
    assert!(h.bmc.power_on);
    let asked: Vec<Vec<u8>> = h
        .bmc
        .seen
        .iter()
        .filter(|s| (s.netfn, s.cmd) == (6, 0x3b))
        .map(|s| s.data.clone())
        .collect();
    assert_eq!(asked, vec![vec![4], vec![3]]);
    // A User-only account is refused with the BMC's completion code.
    let mut bmc = FakeBmc::new(&[17]);
    bmc.max_privilege = 2;
    let mut h = Harness::new(cfg(), bmc);
    assert!(matches!(
        h.run(Command::ChassisControl(ChassisControl::PowerUp)),
        Err(IpmiError::Completion { code: 0x81, .. })
    ));
    assert!(!h.bmc.power_on);
}

#[test]
fn one_command_at_a_time_and_close_without_session() {
    let mut h = Harness::new(cfg(), FakeBmc::new(&[17]));
    h.client.start(Command::GetChassisStatus, h.now).unwrap();
    assert_eq!(
        h.client.start(Command::GetDeviceId, h.now),
        Err(IpmiError::Busy)
    );
    let mut h = Harness::new(cfg(), FakeBmc::new(&[17]));
    assert_eq!(h.run(Command::CloseSession), Ok(Response::SessionClosed));
    assert!(h.client_sent.is_empty());
}

#[test]
fn password_never_printed() {
    let c = ClientConfig::new("admin", "s3cr3t-pw");
    let h = Harness::new(c.clone(), FakeBmc::new(&[17]));
    assert!(!format!("{c:?}").contains("s3cr3t"));
    assert!(!format!("{:?}", h.client).contains("s3cr3t"));
    assert!(rackboot_ipmi::Client::new(
        ClientConfig::new("admin", "123456789012345678901"),
        common::det_rng(1)
    )
    .is_err());
}
