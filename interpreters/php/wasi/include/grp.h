/* wcgi compat: <grp.h> for wasm32-wasi (wasi-libc has none).
 * WASI has no group database: every lookup finds nothing (wasi_stubs.c). */
#ifndef WCGI_WASI_GRP_H
#define WCGI_WASI_GRP_H
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif
struct group {
	char *gr_name;
	char *gr_passwd;
	gid_t gr_gid;
	char **gr_mem;
};
struct group *getgrnam(const char *);
struct group *getgrgid(gid_t);
int getgrnam_r(const char *, struct group *, char *, size_t, struct group **);
int getgrgid_r(gid_t, struct group *, char *, size_t, struct group **);
#ifdef __cplusplus
}
#endif
#endif
