//! The browser harness itself (tests/src/browser.rs), against a page served by the test: that
//! chromium starts, sends the language it was given, types, submits and takes screenshots.

use callwarden_tests::browser::Browser;
use std::{net::SocketAddr, time::Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Serves, on a free port, a page showing the Accept-Language and the request line of the
/// request it answers, with a form that submits `q` back to it.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let request_line = request.lines().next().unwrap_or_default();
                let language = request
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("accept-language")
                            .then(|| value.trim())
                    })
                    .unwrap_or("(none)");
                let body = format!(
                    "<!doctype html><html><head><meta charset=\"utf-8\"><title>echo</title></head>\
                     <body><h1>Echo</h1><p id=\"lang\">{}</p><p id=\"request\">{}</p>\
                     <form method=\"get\" action=\"/\"><input id=\"q\" name=\"q\">\
                     <button id=\"go\" type=\"submit\">Go</button></form></body></html>",
                    escape(language),
                    escape(request_line),
                );
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[tokio::test]
async fn a_polish_browser_asks_for_polish_types_submits_and_takes_screenshots() {
    let addr = echo_server().await;
    let started = Instant::now();
    let browser = Browser::start_with_language("pl").await;
    eprintln!("chromium (pl) ready in {:?}", started.elapsed());

    browser.goto(&format!("http://{addr}/")).await;
    let language = browser.text_of("#lang").await;
    assert!(
        language.starts_with("pl"),
        "Accept-Language of a Polish browser: {language:?}"
    );

    browser.fill("#q", "zażółć gęślą").await;
    let typed = browser
        .find("#q")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(typed, "zażółć gęślą");

    let path = browser.screenshot("harness").await;
    assert_eq!(path, Browser::screenshots_dir().join("harness.png"));
    let png = std::fs::read(&path).expect("the screenshot is saved");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(png.len() > 1000, "an empty screenshot: {} bytes", png.len());

    browser.click("#go").await;
    browser
        .wait_for_text(
            "#request",
            "GET /?q=za%C5%BC%C3%B3%C5%82%C4%87+g%C4%99%C5%9Bl%C4%85",
        )
        .await;
    browser.wait_for("#lang").await;
    browser.close().await;
}

#[tokio::test]
async fn the_language_given_is_the_language_asked_for() {
    let addr = echo_server().await;
    for (lang, expected) in [(None, "en-US"), (Some("zh-CN"), "zh-CN")] {
        let started = Instant::now();
        let browser = match lang {
            None => Browser::start().await,
            Some(lang) => Browser::start_with_language(lang).await,
        };
        eprintln!("chromium ({expected}) ready in {:?}", started.elapsed());
        browser.goto(&format!("http://{addr}/")).await;
        let language = browser.text_of("#lang").await;
        eprintln!("Accept-Language sent: {language}");
        assert!(
            language.starts_with(expected),
            "Accept-Language of {lang:?}: {language:?}"
        );
        browser.close().await;
    }
}
