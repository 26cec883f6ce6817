/* cli.c -- the shared helpers of the `custos` tool: module loading through dlopen, the CK_RV name
 * table, token lookup by label, PIN input from a file or the terminal (never argv, never the
 * environment), and argument parsing. */
#ifndef _GNU_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#endif
#include "cli.h"
#include "util/ckr.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <termios.h>
#include <unistd.h>
#include <limits.h>

const char *cli_prog = "custos";

void cli_err(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_wipe(void *p, size_t n)
{
    explicit_bzero(p, n);
}

/* ---- return-value names (src/util/ckr.c) ----------------------------------------------------- */
const char *cli_rv_name(CK_RV rv)
{
    static __thread char unknown[32];
    const char *name = ckr_name(rv);
    if (name != NULL)
        return name;
    snprintf(unknown, sizeof(unknown), "CKR_0x%08lX", (unsigned long)rv);
    return unknown;
}

/* ---- modules ---------------------------------------------------------------------------------------- */
int cli_module_load(cli_module *m, const char *path, char *err, size_t errlen)
{
    CK_C_GetFunctionList get_list;
    CK_C_GetInterface get_itf;
    CK_INTERFACE_PTR itf = NULL;
    CK_RV rv;

    memset(m, 0, sizeof(*m));
    snprintf(m->path, sizeof(m->path), "%s", path);
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    m->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (m->lib == NULL) {
        snprintf(err, errlen, "%s is not a PKCS#11 module (dlopen: %s)", path, dlerror());
        return -1;
    }
    *(void **)&get_itf = dlsym(m->lib, "C_GetInterface");
    *(void **)&get_list = dlsym(m->lib, "C_GetFunctionList");
    if (get_itf == NULL && get_list == NULL) {
        snprintf(err, errlen, "%s is not a PKCS#11 module (no C_GetFunctionList or C_GetInterface)",
                 path);
        goto fail;
    }
    /* PKCS#11 3.2 sec. 5.4: the "PKCS 11" interface's list starts with the 2.40 functions, so
     * either source gives a CK_FUNCTION_LIST that the tools can call. */
    if (get_itf != NULL && get_itf((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &itf, 0) == CKR_OK && itf != NULL)
        m->f = itf->pFunctionList;
    if (m->f == NULL && get_list != NULL) {
        rv = get_list(&m->f);
        if (rv != CKR_OK || m->f == NULL) {
            snprintf(err, errlen, "%s: C_GetFunctionList failed: %s", path, cli_rv_name(rv));
            goto fail;
        }
    }
    if (m->f == NULL) {
        snprintf(err, errlen, "%s: C_GetInterface gave no function list", path);
        goto fail;
    }
    m->version = m->f->version;
    return 0;
fail:
    dlclose(m->lib);
    m->lib = NULL;
    return -1;
}

CK_RV cli_module_init(cli_module *m, void *reserved)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = reserved;
    CK_RV rv = m->f->C_Initialize(&args);
    if (rv == CKR_OK)
        m->initialized = true;
    return rv;
}

void cli_module_unload(cli_module *m)
{
    if (m->initialized)
        (void)m->f->C_Finalize(NULL);
    m->initialized = false;
    /* Modules that start threads or register atexit handlers (NSS) are not always safe to
     * unmap; the process is about to end, so the mapping is simply left in place. */
    m->lib = NULL;
    m->f = NULL;
}

/* ---- slots and tokens ---------------------------------------------------------------------------- */
void cli_pad(CK_UTF8CHAR *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    memset(dst, ' ', dstlen);
    memcpy(dst, src, n < dstlen ? n : dstlen);
}

static CK_RV slot_list(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID **slots, CK_ULONG *n)
{
    CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, n);
    if (rv != CKR_OK)
        return rv;
    *slots = calloc(*n + 1, sizeof(**slots));
    if (*slots == NULL)
        return CKR_HOST_MEMORY;
    rv = f->C_GetSlotList(CK_TRUE, *slots, n);
    if (rv != CKR_OK) {
        free(*slots);
        *slots = NULL;
    }
    return rv;
}

/* Walk the slots with a present token; pick the first for which want() holds. */
static CK_RV pick_slot(CK_FUNCTION_LIST_PTR f, bool (*want)(const CK_TOKEN_INFO *, const void *),
                       const void *arg, CK_SLOT_ID *slot)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv = slot_list(f, &slots, &n);
    if (rv != CKR_OK)
        return rv;
    rv = CKR_TOKEN_NOT_PRESENT;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (want(&ti, arg)) {
            *slot = slots[i];
            rv = CKR_OK;
            break;
        }
    }
    free(slots);
    return rv;
}

static bool label_is(const CK_TOKEN_INFO *ti, const void *arg)
{
    CK_UTF8CHAR want[32];
    cli_pad(want, sizeof(want), arg);
    return (ti->flags & CKF_TOKEN_INITIALIZED) && memcmp(ti->label, want, sizeof(want)) == 0;
}

static bool is_empty(const CK_TOKEN_INFO *ti, const void *arg)
{
    return !(ti->flags & CKF_TOKEN_INITIALIZED);
}

CK_RV cli_find_token(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot)
{
    return pick_slot(f, label_is, label, slot);
}

CK_RV cli_find_empty_slot(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID *slot)
{
    return pick_slot(f, is_empty, NULL, slot);
}

/* ---- PINs ------------------------------------------------------------------------------------------ */
static int read_line_fd(int fd, char *pin, size_t cap)
{
    size_t n = 0;
    char c;
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || c == '\n')
            break;
        if (n + 1 >= cap) {
            cli_wipe(pin, cap);
            return -1;
        }
        pin[n++] = c;
    }
    c = 0;
    if (n > 0 && pin[n - 1] == '\r')
        n--;
    pin[n] = '\0';
    return (int)n;
}

int cli_read_pin(const char *file, const char *prompt, char *pin, size_t cap, char *err, size_t errlen)
{
    int fd, n;
    if (file != NULL) {
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, errlen, "PIN file %s: %s", file, strerror(errno));
            return -1;
        }
        n = read_line_fd(fd, pin, cap);
        close(fd);
        if (n <= 0) {
            snprintf(err, errlen, "PIN file %s: %s", file, n < 0 ? "line too long" : "empty");
            return -1;
        }
        return 0;
    }
    fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "no terminal to ask for the PIN: give --pin-file FILE");
        return -1;
    }
    struct termios old, quiet;
    bool echo_off = tcgetattr(fd, &old) == 0;
    if (echo_off) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        echo_off = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    }
    ssize_t w = write(fd, prompt, strlen(prompt));
    n = read_line_fd(fd, pin, cap);
    if (echo_off)
        (void)tcsetattr(fd, TCSAFLUSH, &old);
    w = write(fd, "\n", 1); /* the echo was off: end the prompt line */
    (void)w;
    close(fd);
    if (n <= 0) {
        snprintf(err, errlen, "no PIN entered");
        return -1;
    }
    return 0;
}

int cli_random_pin(char *pin, size_t cap)
{
    unsigned char b[16];
    if (cap < 2 * sizeof(b) + 1 || getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -1;
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(pin + 2 * i, 3, "%02x", b[i]);
    cli_wipe(b, sizeof(b));
    return 0;
}

/* ---- parsing --------------------------------------------------------------------------------------- */
int cli_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

int cli_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---- the default module ------------------------------------------------------------------------- */

/* $CUSTOS_MODULE, else next to this program (the build tree: build/tools/custos -> build/.libs;
 * an install prefix: bin/custos -> lib/pkcs11), else where `make install` put it. */
static const char *const MODULE_NEAR_EXE[] = {
    "../.libs/custos-pkcs11.so",
    "../lib/pkcs11/custos-pkcs11.so",
    "../lib64/pkcs11/custos-pkcs11.so",
};

int cli_default_module(char *path, size_t cap)
{
    char exe[PATH_MAX];
    const char *env = getenv("CUSTOS_MODULE");
    if (env != NULL && *env != '\0') {
        snprintf(path, cap, "%s", env);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            for (size_t i = 0; i < NELEM(MODULE_NEAR_EXE); i++) {
                if (snprintf(path, cap, "%s/%s", exe, MODULE_NEAR_EXE[i]) >= (int)cap)
                    continue;
                if (access(path, R_OK) == 0)
                    return 0;
            }
        }
    }
#ifdef CUSTOS_MODULE_DIR
    if (snprintf(path, cap, "%s/custos-pkcs11.so", CUSTOS_MODULE_DIR) < (int)cap && access(path, R_OK) == 0)
        return 0;
#endif
    return -1;
}
