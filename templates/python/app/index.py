"""A CGI app: the request is in os.environ (and the body on stdin); the response is a header
block, a blank line and the body, printed to stdout. Each request runs a fresh interpreter."""
import html
import json
import os
import sqlite3
import sys
from urllib.parse import parse_qs


def respond(body, content_type="text/html; charset=utf-8", status="200 OK"):
    sys.stdout.write(f"Status: {status}\r\nContent-Type: {content_type}\r\n\r\n{body}")


def count_visits():
    """A counter in /data/counter.db: mount a writable directory there with --mapdir."""
    if not os.path.isdir("/data"):
        return None
    with sqlite3.connect("/data/counter.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS visits (n INTEGER)")
        db.execute("INSERT INTO visits VALUES (1)")
        (count,) = db.execute("SELECT COUNT(*) FROM visits").fetchone()
    db.close()  # always close: a lock left behind would block the next request
    return count


def main():
    method = os.environ.get("REQUEST_METHOD", "GET")
    path = os.environ.get("PATH_INFO", "/")
    query = parse_qs(os.environ.get("QUERY_STRING", ""))
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    form = parse_qs(sys.stdin.read(length)) if length else {}

    if path == "/api":
        respond(json.dumps({"method": method, "query": query, "form": form}), "application/json")
    elif path == "/count":
        count = count_visits()
        respond(f"visits: {count}\n" if count else "mount a data directory: --mapdir /data:./data\n",
                "text/plain; charset=utf-8")
    elif path == "/":
        name = (form.get("name") or query.get("name") or ["world"])[0]
        respond(
            "<!doctype html>\n<title>{{name}}</title>\n"
            f"<h1>Hello, {html.escape(name)}!</h1>\n"
            "<p>Served by Python in a fresh WebAssembly instance.</p>\n"
            '<form method="post"><input name="name"> <button>Greet</button></form>\n'
        )
    else:
        respond("not found\n", "text/plain", "404 Not Found")


main()
