<?php
// A visit counter in SQLite, kept in /data: mount a writable directory there with
// `wcgi run . --mapdir /data:./data`.
header('Content-Type: text/plain; charset=utf-8');
if (!is_dir('/data')) {
    echo "mount a data directory: wcgi run . --mapdir /data:./data\n";
    exit;
}
$db = new PDO('sqlite:/data/visits.sqlite', null, null, [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_TIMEOUT => 10, // wait for concurrent requests instead of failing
]);
$db->exec('CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, at TEXT)');
$db->exec("INSERT INTO visits (at) VALUES (datetime('now'))");
$count = $db->query('SELECT COUNT(*) FROM visits')->fetchColumn();
echo "visits: $count\n";
