//! Real client RRQs captured in the lab (see testdata/extract.py).

use super::{cfg, drain, file_of, oack_options, t0};
use crate::{handle_initial, Initial, Outcome, Packet, ReadRequest, Transfer};

const OVMF_1: &[u8] = include_bytes!("../../testdata/ovmf-rrq-1.bin");
const OVMF_2: &[u8] = include_bytes!("../../testdata/ovmf-rrq-2.bin");
const CURL_1: &[u8] = include_bytes!("../../testdata/curl-rrq-1.bin");
const CURL_2: &[u8] = include_bytes!("../../testdata/curl-rrq-2.bin");
const HPA_1: &[u8] = include_bytes!("../../testdata/tftp-hpa-rrq-1.bin");
const HPA_2: &[u8] = include_bytes!("../../testdata/tftp-hpa-rrq-2.bin");
const HPA_3: &[u8] = include_bytes!("../../testdata/tftp-hpa-rrq-3.bin");
const ATFTP_1: &[u8] = include_bytes!("../../testdata/atftp-rrq-1.bin");
const ATFTP_2: &[u8] = include_bytes!("../../testdata/atftp-rrq-2.bin");

const SIZE: usize = 1_000_000;

fn read(bytes: &[u8]) -> ReadRequest {
    match handle_initial(bytes) {
        Initial::Read(req) => req,
        other => panic!("not a read: {other:?}"),
    }
}

fn opts(req: &ReadRequest) -> Vec<(&str, &str)> {
    req.options
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// (OACK options or None, blksize, windowsize) for a captured request.
fn negotiated(req: &ReadRequest) -> (Option<Vec<(String, String)>>, u16, u16) {
    let mut t = Transfer::new(req, file_of(SIZE), &cfg(), t0());
    let first = drain(&mut t);
    let oack = t.oack_sent().then(|| oack_options(&first[0]));
    (oack, t.blksize(), t.windowsize())
}

fn owned(p: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        p.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[test]
fn ovmf_first_rrq_tsize_probe() {
    let req = read(OVMF_1);
    assert_eq!(req.path, "ipxe.efi");
    assert_eq!(
        opts(&req),
        [("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")]
    );
    let (oack, bs, ws) = negotiated(&req);
    assert_eq!(
        oack,
        owned(&[
            ("tsize", "1000000"),
            ("blksize", "1468"),
            ("windowsize", "4")
        ])
    );
    assert_eq!((bs, ws), (1468, 4));
}

#[test]
fn ovmf_full_flow_probe_abort_then_download() {
    let now = t0();
    let file = file_of(SIZE);
    // 1st RRQ: OACK with tsize, client aborts with ERROR 8.
    let mut probe = Transfer::new(&read(OVMF_1), file.clone(), &cfg(), now);
    drain(&mut probe);
    let abort = Packet::Error {
        code: 8,
        message: "User aborted download".into(),
    };
    probe.handle_datagram(&abort.to_bytes(), now);
    assert!(matches!(
        probe.outcome(),
        Some(Outcome::AbortedAfterOack { .. })
    ));
    // 2nd RRQ: blksize 1468 windowsize 4, the real download.
    let req = read(OVMF_2);
    assert_eq!(opts(&req), [("blksize", "1468"), ("windowsize", "4")]);
    let mut t = Transfer::new(&req, file.clone(), &cfg(), now);
    let run = super::sim::Client::new(1468, 4).run(&mut t, now);
    super::sim::assert_completed(&run, &file);
}

#[test]
fn ovmf_second_rrq_negotiates_blksize_and_windowsize() {
    let (oack, bs, ws) = negotiated(&read(OVMF_2));
    assert_eq!(oack, owned(&[("blksize", "1468"), ("windowsize", "4")]));
    assert_eq!((bs, ws), (1468, 4));
}

#[test]
fn tftp_hpa_sends_no_options_and_gets_no_oack() {
    for bytes in [HPA_1, HPA_2, HPA_3] {
        let req = read(bytes);
        assert_eq!(req.path, "small");
        assert!(req.options.is_empty());
        assert_eq!(negotiated(&req), (None, 512, 1));
    }
}

#[test]
fn atftp_tsize_enable_is_not_acked() {
    let req = read(ATFTP_1);
    assert_eq!(
        opts(&req),
        [
            ("tsize", "enable"),
            ("blksize", "1468"),
            ("windowsize", "8")
        ]
    );
    let (oack, bs, ws) = negotiated(&req);
    assert_eq!(oack, owned(&[("blksize", "1468"), ("windowsize", "8")]));
    assert_eq!((bs, ws), (1468, 8));
    let req = read(ATFTP_2);
    assert_eq!(
        negotiated(&req).0,
        owned(&[("blksize", "1468"), ("windowsize", "8")])
    );
}

#[test]
fn curl_sends_tsize_blksize_timeout() {
    let req = read(CURL_1);
    assert_eq!(
        opts(&req),
        [("tsize", "0"), ("blksize", "512"), ("timeout", "6")]
    );
    let (oack, bs, ws) = negotiated(&req);
    assert_eq!(
        oack,
        owned(&[("tsize", "1000000"), ("blksize", "512"), ("timeout", "6")])
    );
    assert_eq!((bs, ws), (512, 1));
    let (oack, bs, _) = negotiated(&read(CURL_2));
    assert_eq!(
        oack,
        owned(&[("tsize", "1000000"), ("blksize", "1468"), ("timeout", "6")])
    );
    assert_eq!(bs, 1468);
}

#[test]
fn captured_vectors_round_trip_through_emit() {
    for bytes in [
        OVMF_1, OVMF_2, CURL_1, CURL_2, HPA_1, HPA_2, HPA_3, ATFTP_1, ATFTP_2,
    ] {
        let pkt = Packet::parse(bytes).unwrap();
        assert_eq!(pkt.to_bytes(), bytes);
    }
}
