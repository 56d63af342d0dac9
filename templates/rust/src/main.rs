//! A CGI program: the request arrives in environment variables (and the body on stdin); the
//! response is a header block, a blank line and the body, written to stdout.

use std::collections::HashMap;
use std::io::Read;

fn main() {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_default();
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let query = parse_form(&std::env::var("QUERY_STRING").unwrap_or_default());
    let mut body = String::new();
    let _ = std::io::stdin().read_to_string(&mut body);
    let form = parse_form(&body);

    let name = form.get("name").or(query.get("name")).map(String::as_str).unwrap_or("world");

    print!("Content-Type: text/html; charset=utf-8\r\n\r\n");
    println!("<!doctype html>");
    println!("<title>{{name}}</title>");
    println!("<h1>Hello, {}!</h1>", escape(name));
    println!("<p>{} {} was served by a fresh WebAssembly instance.</p>", escape(&method), escape(&path));
    println!("<form method=\"post\"><input name=\"name\" placeholder=\"your name\"> <button>Greet</button></form>");
}

/// `a=1&b=x%20y` → {a: "1", b: "x y"}.
fn parse_form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// Percent-decoding, with `+` as a space (HTML forms).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match u8::from_str_radix(&text[index + 1..index + 3], 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
