//! A CGI program in plain Rust: the request arrives as environment variables (and the body on
//! stdin), the response goes to stdout as a header block, a blank line, and the body.

use std::io::Read;

fn main() {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_default();
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let mut body = String::new();
    let _ = std::io::stdin().read_to_string(&mut body);

    // /app is the package's `app` directory, mounted by the [fs] table of wasmer.toml.
    let greeting = std::fs::read_to_string("/app/greeting.txt")
        .unwrap_or_else(|_| "Hello from WebAssembly!".to_string());

    print!("Content-Type: text/html; charset=utf-8\r\n\r\n");
    println!("<!doctype html>");
    println!("<title>wcgi hello</title>");
    println!("<h1>{}</h1>", escape(greeting.trim()));
    println!("<p>This page was made by a fresh WebAssembly instance, just for this request.</p>");
    println!("<p>{} {} {}</p>", escape(&method), escape(&path), escape(&query));
    if !body.is_empty() {
        println!("<p>You sent {} bytes.</p>", body.len());
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
