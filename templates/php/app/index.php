<?php
// The front controller: "/" and every path that names no script under app/ run this file.
// Each request runs in a fresh, sandboxed WebAssembly instance of php-cgi.
$name = $_POST['name'] ?? $_GET['name'] ?? 'world';
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path !== '/' && $path !== '/index.php') {
    http_response_code(404);
    header('Content-Type: text/plain; charset=utf-8');
    echo "not found\n";
    exit;
}
?>
<!doctype html>
<title>{{name}}</title>
<h1>Hello, <?= htmlspecialchars($name) ?>!</h1>
<p>Served by PHP <?= PHP_VERSION ?> in a fresh WebAssembly instance.</p>
<form method="post"><input name="name"> <button>Greet</button></form>
<p><a href="/visits.php">Visits</a> (an SQLite counter; needs <code>--mapdir /data:./data</code>)</p>
