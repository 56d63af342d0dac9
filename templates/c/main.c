/* A CGI program in C: the request arrives in environment variables (and the body on stdin);
 * the response is a header block, a blank line and the body, written to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_escaped(const char *text) {
    for (; *text; text++) {
        switch (*text) {
        case '&': fputs("&amp;", stdout); break;
        case '<': fputs("&lt;", stdout); break;
        case '>': fputs("&gt;", stdout); break;
        case '"': fputs("&quot;", stdout); break;
        default: putchar(*text);
        }
    }
}

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value ? value : fallback;
}

int main(void) {
    char body[4096] = {0};
    size_t length = fread(body, 1, sizeof body - 1, stdin);
    body[length] = '\0';

    printf("Content-Type: text/html; charset=utf-8\r\n\r\n");
    printf("<!doctype html>\n<title>{{name}}</title>\n<h1>Hello from C!</h1>\n<p>");
    print_escaped(env_or("REQUEST_METHOD", ""));
    putchar(' ');
    print_escaped(env_or("PATH_INFO", ""));
    printf(" was served by a fresh WebAssembly instance.</p>\n");
    if (length > 0) {
        printf("<p>You sent: ");
        print_escaped(body);
        printf("</p>\n");
    }
    printf("<form method=\"post\"><input name=\"name\"> <button>Send</button></form>\n");
    return 0;
}
