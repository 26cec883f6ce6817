/* cli.c -- the shared helpers of the `custos` tool: module loading through dlopen, the CK_RV name
 * table, token lookup by label, PIN input from a file or the terminal (never argv, never the
 * environment), and argument parsing. */
#ifndef _GNU_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#endif
#include "cli.h"

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

/* ---- return-value names: one row per standard code ---------------------------------------------- */
#define R(x) { x, #x },
static const struct {
    CK_RV rv;
    const char *name;
} RV_NAMES[] = {
    R(CKR_OK) R(CKR_CANCEL) R(CKR_HOST_MEMORY) R(CKR_SLOT_ID_INVALID) R(CKR_GENERAL_ERROR)
    R(CKR_FUNCTION_FAILED) R(CKR_ARGUMENTS_BAD) R(CKR_NO_EVENT) R(CKR_NEED_TO_CREATE_THREADS)
    R(CKR_CANT_LOCK) R(CKR_ATTRIBUTE_READ_ONLY) R(CKR_ATTRIBUTE_SENSITIVE)
    R(CKR_ATTRIBUTE_TYPE_INVALID) R(CKR_ATTRIBUTE_VALUE_INVALID) R(CKR_ACTION_PROHIBITED)
    R(CKR_DATA_INVALID) R(CKR_DATA_LEN_RANGE) R(CKR_DEVICE_ERROR) R(CKR_DEVICE_MEMORY)
    R(CKR_DEVICE_REMOVED) R(CKR_ENCRYPTED_DATA_INVALID) R(CKR_ENCRYPTED_DATA_LEN_RANGE)
    R(CKR_AEAD_DECRYPT_FAILED) R(CKR_FUNCTION_CANCELED) R(CKR_FUNCTION_NOT_PARALLEL)
    R(CKR_FUNCTION_NOT_SUPPORTED) R(CKR_KEY_HANDLE_INVALID) R(CKR_KEY_SIZE_RANGE)
    R(CKR_KEY_TYPE_INCONSISTENT) R(CKR_KEY_NOT_NEEDED) R(CKR_KEY_CHANGED) R(CKR_KEY_NEEDED)
    R(CKR_KEY_INDIGESTIBLE) R(CKR_KEY_FUNCTION_NOT_PERMITTED) R(CKR_KEY_NOT_WRAPPABLE)
    R(CKR_KEY_UNEXTRACTABLE) R(CKR_MECHANISM_INVALID) R(CKR_MECHANISM_PARAM_INVALID)
    R(CKR_OBJECT_HANDLE_INVALID) R(CKR_OPERATION_ACTIVE) R(CKR_OPERATION_NOT_INITIALIZED)
    R(CKR_PIN_INCORRECT) R(CKR_PIN_INVALID) R(CKR_PIN_LEN_RANGE) R(CKR_PIN_EXPIRED)
    R(CKR_PIN_LOCKED) R(CKR_SESSION_CLOSED) R(CKR_SESSION_COUNT) R(CKR_SESSION_HANDLE_INVALID)
    R(CKR_SESSION_PARALLEL_NOT_SUPPORTED) R(CKR_SESSION_READ_ONLY) R(CKR_SESSION_EXISTS)
    R(CKR_SESSION_READ_ONLY_EXISTS) R(CKR_SESSION_READ_WRITE_SO_EXISTS) R(CKR_SIGNATURE_INVALID)
    R(CKR_SIGNATURE_LEN_RANGE) R(CKR_TEMPLATE_INCOMPLETE) R(CKR_TEMPLATE_INCONSISTENT)
    R(CKR_TOKEN_NOT_PRESENT) R(CKR_TOKEN_NOT_RECOGNIZED) R(CKR_TOKEN_WRITE_PROTECTED)
    R(CKR_UNWRAPPING_KEY_HANDLE_INVALID) R(CKR_UNWRAPPING_KEY_SIZE_RANGE)
    R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_USER_ALREADY_LOGGED_IN)
    R(CKR_USER_NOT_LOGGED_IN) R(CKR_USER_PIN_NOT_INITIALIZED) R(CKR_USER_TYPE_INVALID)
    R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) R(CKR_USER_TOO_MANY_TYPES) R(CKR_WRAPPED_KEY_INVALID)
    R(CKR_WRAPPED_KEY_LEN_RANGE) R(CKR_WRAPPING_KEY_HANDLE_INVALID) R(CKR_WRAPPING_KEY_SIZE_RANGE)
    R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_RANDOM_SEED_NOT_SUPPORTED) R(CKR_RANDOM_NO_RNG)
    R(CKR_DOMAIN_PARAMS_INVALID) R(CKR_CURVE_NOT_SUPPORTED) R(CKR_BUFFER_TOO_SMALL)
    R(CKR_SAVED_STATE_INVALID) R(CKR_INFORMATION_SENSITIVE) R(CKR_STATE_UNSAVEABLE)
    R(CKR_CRYPTOKI_NOT_INITIALIZED) R(CKR_CRYPTOKI_ALREADY_INITIALIZED) R(CKR_MUTEX_BAD)
    R(CKR_MUTEX_NOT_LOCKED) R(CKR_NEW_PIN_MODE) R(CKR_NEXT_OTP) R(CKR_EXCEEDED_MAX_ITERATIONS)
    R(CKR_FIPS_SELF_TEST_FAILED) R(CKR_LIBRARY_LOAD_FAILED) R(CKR_PIN_TOO_WEAK)
    R(CKR_PUBLIC_KEY_INVALID) R(CKR_FUNCTION_REJECTED) R(CKR_TOKEN_RESOURCE_EXCEEDED)
    R(CKR_OPERATION_CANCEL_FAILED) R(CKR_KEY_EXHAUSTED) R(CKR_PENDING)
    R(CKR_SESSION_ASYNC_NOT_SUPPORTED) R(CKR_SEED_RANDOM_REQUIRED) R(CKR_OPERATION_NOT_VALIDATED)
    R(CKR_TOKEN_NOT_INITIALIZED) R(CKR_PARAMETER_SET_NOT_SUPPORTED)
};
#undef R

const char *cli_rv_name(CK_RV rv)
{
    static __thread char unknown[32];
    for (size_t i = 0; i < NELEM(RV_NAMES); i++)
        if (RV_NAMES[i].rv == rv)
            return RV_NAMES[i].name;
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
