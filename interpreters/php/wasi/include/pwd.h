/* wcgi compat: <pwd.h> for wasm32-wasi (wasi-libc has none).
 * WASI has no user database: every lookup finds nothing (see wasi_stubs.c),
 * so PHP's get_current_user(), posix-style name lookups and chown() by name
 * report failure. */
#ifndef WCGI_WASI_PWD_H
#define WCGI_WASI_PWD_H
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif
struct passwd {
	char *pw_name;
	char *pw_passwd;
	uid_t pw_uid;
	gid_t pw_gid;
	char *pw_gecos;
	char *pw_dir;
	char *pw_shell;
};
struct passwd *getpwnam(const char *);
struct passwd *getpwuid(uid_t);
int getpwnam_r(const char *, struct passwd *, char *, size_t, struct passwd **);
int getpwuid_r(uid_t, struct passwd *, char *, size_t, struct passwd **);
#ifdef __cplusplus
}
#endif
#endif
