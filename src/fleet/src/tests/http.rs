#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn urls() {
    let u = Url::parse("http://10.97.0.2:50042/ipxe/boot.ipxe?uuid=x&mac=y").unwrap();
    assert_eq!(
        u.addr(),
        SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 2), 50042)
    );
    assert_eq!(u.target, "/ipxe/boot.ipxe?uuid=x&mac=y");
    assert_eq!(u.file_name(), "boot.ipxe");
    let r = String::from_utf8(u.request()).unwrap();
    assert!(
        r.starts_with("GET /ipxe/boot.ipxe?uuid=x&mac=y HTTP/1.1\r\n"),
        "{r}"
    );
    assert!(r.contains("Host: 10.97.0.2:50042\r\n") && r.ends_with("\r\n\r\n"));
    assert_eq!(Url::parse("http://10.0.0.1/").unwrap().port, 80);
    assert!(Url::parse("https://10.0.0.1/").is_none());
    assert!(Url::parse("http://name.example/").is_none());
}

#[test]
fn content_length_body_split_anywhere() {
    let resp =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 11\r\n\r\n#!ipxe\nboot";
    for cut in 0..resp.len() {
        let mut r = Reader::new(1024);
        r.feed(&resp[..cut]).unwrap();
        r.feed(&resp[cut..]).unwrap();
        assert!(r.is_done(), "cut {cut}");
        let done = r.finish().unwrap();
        assert_eq!(done.status, 200);
        assert_eq!(done.body, b"#!ipxe\nboot");
    }
}

#[test]
fn count_only_and_truncation() {
    let mut r = Reader::new(0);
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    r.feed(&[0u8; 60000]).unwrap();
    assert!(!r.is_done());
    assert_eq!(r.finish(), Err(ReadError::Truncated));
    let mut r = Reader::new(0);
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    r.feed(&[0u8; 100000]).unwrap();
    let done = r.finish().unwrap();
    assert_eq!((done.length, done.body.len()), (100000, 0));
}

#[test]
fn chunked_and_until_close_and_errors() {
    let mut r = Reader::new(100);
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        .unwrap();
    r.feed(b"3;x=y\r\nefg\r\n0\r\n\r\n").unwrap();
    assert!(r.is_done());
    assert_eq!(r.finish().unwrap().body, b"abcdefg");

    let mut r = Reader::new(100);
    r.feed(b"HTTP/1.0 200 OK\r\n\r\nhello").unwrap();
    assert!(!r.is_done());
    assert_eq!(r.finish().unwrap().body, b"hello");

    let mut r = Reader::new(100);
    r.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(r.finish().unwrap().status, 404);

    let mut r = Reader::new(100);
    assert_eq!(r.feed(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(ReadError::BadHead));
    assert_eq!(Reader::new(0).finish(), Err(ReadError::Truncated));
}
