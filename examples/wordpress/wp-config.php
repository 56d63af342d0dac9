<?php
/**
 * WordPress configuration for wcgi: SQLite (the sqlite-database-integration drop-in in
 * wp-content/db.php) instead of MySQL, the docroot read-only at /app, the database in a
 * writable directory mounted at /data. The same docroot also runs under native php-cgi
 * (for benchmarks): set WP_DATA_DIR to the database directory there.
 */

define( 'DB_ENGINE', 'sqlite' );
define( 'DB_DIR', rtrim( getenv( 'WP_DATA_DIR' ) ?: '/data/', '/' ) . '/' );
define( 'DB_FILE', 'wordpress.sqlite' );
// Unused by SQLite, but parts of WordPress read them.
define( 'DB_NAME', 'wordpress' );
define( 'DB_USER', '' );
define( 'DB_PASSWORD', '' );
define( 'DB_HOST', '' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
$table_prefix = 'wp_';

/*
 * No AUTH_KEY, SECURE_AUTH_KEY, ..., NONCE_SALT here on purpose. For each one that is not
 * defined, wp_salt() in wp-includes/pluggable.php reads the option of the same name
 * (auth_key, auth_salt, ...) and, on first use, creates it with wp_generate_password( 64,
 * true, true ) (random_int(), a CSPRNG) and stores it with update_site_option(). So every
 * installation gets its own random keys, kept in its database, and none are published here.
 */

// Debian's wp-admin/install.php (its fix for Debian bug #430781) copies the globals
// $upload_path and $upload_url_path into the options of the same name after installing,
// but nothing defines them (not even Debian's config-default.php), so PHP warns
// "Undefined variable". Empty strings are the options' defaults (uploads in wp-content/uploads).
$upload_path     = '';
$upload_url_path = '';

// Each request is a fresh instance without outbound network: no cron spawning, no
// update checks, no HTTP requests except to this site itself.
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
define( 'FS_METHOD', 'direct' );

// Warnings go to php-cgi's stderr, which wcgi logs with the request; never into pages.
// Turn on with: wcgi run ... --env WP_DEBUG=1
define( 'WP_DEBUG', (bool) getenv( 'WP_DEBUG' ) );
define( 'WP_DEBUG_DISPLAY', false );
define( 'WP_DEBUG_LOG', false );

// Without the database directory, WordPress would offer its installer and then fail; say
// what is missing instead.
if ( ! is_dir( DB_DIR ) ) {
	header( 'Content-Type: text/plain; charset=utf-8', true, 503 );
	echo 'The database directory ', DB_DIR, " is not there. Serve the site with it mapped:\n",
		"  wcgi run examples/wordpress --mapdir /data:examples/wordpress/data\n";
	exit( 0 );
}

if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
