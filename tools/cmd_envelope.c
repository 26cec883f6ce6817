/* cmd_envelope.c -- `custos encrypt|decrypt|rewrap|inspect|dek` (docs/envelope-format.md): the
 * envelope library (src/envelope) driven from the command line against any PKCS#11 token, and the
 * token sessions these commands share with `custos key`: module, token by label or pkcs11: URI
 * (RFC 7512, parsed by libp11-kit), login. An output file appears only once every tag verified. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#include "cli.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "custos.h"
#include "envelope/envelope.h"
/* p11-kit's uri.h includes its own copy of the standard pkcs11.h; ours, already included, has
 * the same names and layouts (PKCS#11 3.2 sec. 3), so p11-kit's copy is skipped. */
#define PKCS11_H 1
#include <p11-kit/uri.h>

#define IO_BLOCK 65536
/* The text form's limit (docs/envelope-format.md sec. 3) plus a final "\r\n". */
#define TEXT_READ_MAX (ENV_TEXT_MAX + 2)
/* The largest binary envelope whose text form fits ENV_TEXT_MAX. */
#define TEXT_BIN_MAX ((ENV_TEXT_MAX - sizeof(ENV_TEXT_PREFIX)) / 4 * 3)

/* ==== token sessions (shared with cmd_key.c through cli.h) ==================================== */


static const struct {
    CK_RV rv;
    const char *why;
} WHY[] = {
    { CKR_PIN_INCORRECT, "wrong PIN" },
    { CKR_PIN_LOCKED, "the PIN is locked (too many wrong PINs) or the user is disabled" },
    { CKR_PIN_LEN_RANGE, "the PIN's length is outside the token's range" },
    { CKR_USER_PIN_NOT_INITIALIZED, "the token has no user PIN yet" },
    { CKR_ACTION_PROHIBITED, "the logged-in user's roles do not allow this" },
    { CKR_KEY_FUNCTION_NOT_PERMITTED,
      "the key may not do this (suspended, rotated out, pending destruction or outside its dates)" },
    { CKR_KEY_EXHAUSTED, "the key reached its encryption limit: rotate its family" },
    { CKR_USER_NOT_LOGGED_IN, "nobody is logged in" },
    { CKR_TOKEN_WRITE_PROTECTED, "the token is write-protected" },
    { CKR_CUSTOS_AUDIT_FAILED, "the audit record could not be written, so the token refused" },
    { CKR_DEVICE_ERROR, "the token's store failed" },
};

const char *cli_token_why(CK_RV rv)
{
    for (size_t i = 0; i < NELEM(WHY); i++)
        if (WHY[i].rv == rv)
            return WHY[i].why;
    return NULL;
}

static const char *rv_name(CK_RV rv)
{
    return rv == CKR_CUSTOS_AUDIT_FAILED ? "CKR_CUSTOS_AUDIT_FAILED" : cli_rv_name(rv);
}

/* "what: why (CKR_...)" on one line. */
static void token_err(const char *what, CK_RV rv)
{
    const char *why = cli_token_why(rv);
    if (why != NULL)
        cli_err("%s: %s (%s)", what, why, rv_name(rv));
    else
        cli_err("%s failed (%s)", what, rv_name(rv));
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int cli_token_opt(cli_token_opts *o, int code, const char *arg)
{
    unsigned long v;
    switch (code) {
    case CLI_OPT_MODULE: o->module = arg; return 0;
    case CLI_OPT_TOKEN: o->token = arg; return 0;
    case CLI_OPT_PIN_FILE: o->pin_file = arg; return 0;
    case CLI_OPT_USER: o->user = arg; return 0;
    case CLI_OPT_KEY: o->key = arg; return 0;
    case CLI_OPT_SLOT:
        if (cli_parse_ulong(arg, 0, (unsigned long)LONG_MAX, &v) != 0) {
            cli_err("--slot: not a slot number: %s", arg);
            return -1;
        }
        o->slot = (long)v;
        return 0;
    default: return -1;
    }
}

static bool is_uri(const char *s)
{
    return s != NULL && strncmp(s, P11_KIT_URI_SCHEME ":", P11_KIT_URI_SCHEME_LEN + 1) == 0;
}

/* Parse a pkcs11: URI with libp11-kit. The URI itself is never echoed: it may hold a pin-value. */
static int parse_uri(const char *s, const char *what, P11KitUri **out)
{
    P11KitUri *u = p11_kit_uri_new();
    if (u == NULL) {
        cli_err("out of memory");
        return -1;
    }
    int r = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, u);
    if (r != P11_KIT_URI_OK) {
        cli_err("%s: not a valid pkcs11: URI (%s)", what, p11_kit_uri_message(r));
        goto fail;
    }
    if (p11_kit_uri_any_unrecognized(u)) {
        cli_err("%s: the URI has an attribute this tool does not know (RFC 7512 sec. 2.3)", what);
        goto fail;
    }
    if (p11_kit_uri_get_pin_value(u) != NULL) {
        cli_err("%s: pin-value would put the PIN on the command line; use --pin-file or "
                "pin-source=file:PATH",
                what);
        goto fail;
    }
    *out = u;
    return 0;
fail:
    p11_kit_uri_free(u);
    return -1;
}

/* The object part of a --key URI: object= (CKA_LABEL), id= (CKA_ID), type= secret-key. */
static int key_from_uri(cli_token *t, P11KitUri *u)
{
    CK_ATTRIBUTE_PTR a = p11_kit_uri_get_attribute(u, CKA_CLASS);
    if (a != NULL && (a->ulValueLen != sizeof(CK_OBJECT_CLASS) ||
                      *(CK_OBJECT_CLASS *)a->pValue != CKO_SECRET_KEY)) {
        cli_err("--key: the URI names an object of another type; a KEK is type=secret-key");
        return -1;
    }
    a = p11_kit_uri_get_attribute(u, CKA_LABEL);
    if (a != NULL) {
        if (a->ulValueLen == 0 || a->ulValueLen >= sizeof(t->key_label) ||
            memchr(a->pValue, '\0', a->ulValueLen) != NULL) {
            cli_err("--key: the URI's object= must be 1 to %zu bytes without NUL",
                    sizeof(t->key_label) - 1);
            return -1;
        }
        memcpy(t->key_label, a->pValue, a->ulValueLen);
        t->key_label[a->ulValueLen] = '\0';
    }
    a = p11_kit_uri_get_attribute(u, CKA_ID);
    if (a != NULL) {
        if (a->ulValueLen == 0 || a->ulValueLen > sizeof(t->key_id)) {
            cli_err("--key: the URI's id= must be 1 to %zu bytes", sizeof(t->key_id));
            return -1;
        }
        memcpy(t->key_id, a->pValue, a->ulValueLen);
        t->key_id_len = a->ulValueLen;
    }
    if (t->key_label[0] == '\0' && t->key_id_len == 0) {
        cli_err("--key: the URI names no key: give object=LABEL (or id=)");
        return -1;
    }
    return 0;
}

/* Does slot `s` hold an initialised token that every selector accepts? */
static bool slot_wanted(cli_token *t, CK_SLOT_ID s, const CK_INFO *mi, const cli_token_opts *o,
                        P11KitUri *const uris[2])
{
    CK_FUNCTION_LIST_PTR f = t->m.f;
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;
    if (f->C_GetTokenInfo(s, &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
        return false;
    if (o->slot >= 0 && s != (CK_SLOT_ID)o->slot)
        return false;
    if (o->token != NULL && !is_uri(o->token)) {
        CK_UTF8CHAR want[32];
        cli_pad(want, sizeof(want), o->token);
        if (strlen(o->token) > sizeof(want) || memcmp(ti.label, want, sizeof(want)) != 0)
            return false;
    }
    if (f->C_GetSlotInfo(s, &si) != CKR_OK)
        return false;
    for (int i = 0; i < 2; i++) {
        P11KitUri *u = uris[i];
        if (u == NULL)
            continue;
        CK_SLOT_ID id = p11_kit_uri_get_slot_id(u);
        if (id != (CK_SLOT_ID)-1 && id != s)
            return false;
        if (!p11_kit_uri_match_module_info(u, (CK_INFO *)mi) ||
            !p11_kit_uri_match_slot_info(u, &si) || !p11_kit_uri_match_token_info(u, &ti))
            return false;
    }
    return true;
}

static int pick_slot(cli_token *t, const cli_token_opts *o, P11KitUri *const uris[2])
{
    CK_FUNCTION_LIST_PTR f = t->m.f;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, found = 0;
    CK_INFO mi;
    CK_RV rv = f->C_GetInfo(&mi);
    if (rv == CKR_OK)
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv == CKR_OK) {
        slots = calloc(n + 1, sizeof(*slots));
        rv = slots == NULL ? CKR_HOST_MEMORY : f->C_GetSlotList(CK_TRUE, slots, &n);
    }
    if (rv != CKR_OK) {
        free(slots);
        token_err("listing the slots", rv);
        return -1;
    }
    for (CK_ULONG i = 0; i < n; i++)
        if (slot_wanted(t, slots[i], &mi, o, uris) && found++ == 0)
            t->slot = slots[i];
    free(slots);
    bool chosen = o->slot >= 0 || o->token != NULL || uris[1] != NULL;
    if (found == 1)
        return 0;
    if (found == 0 && chosen)
        cli_err("no initialised token matches the --slot/--token/--key given");
    else if (found == 0)
        cli_err("no initialised token (initialise one first, e.g. pkcs11-tool --init-token)");
    else if (chosen)
        cli_err("%lu tokens match: name one more precisely (--token LABEL or a pkcs11: URI)",
                (unsigned long)found);
    else
        cli_err("%lu initialised tokens: choose one with --token LABEL, --token 'pkcs11:token=...' "
                "or --slot N",
                (unsigned long)found);
    return -1;
}

/* PKCS#11 3.0 sec. 5.4: the vendor interface, when the module has it. */
static void find_vendor(cli_token *t)
{
    CK_C_GetInterface get_itf;
    CK_INTERFACE_PTR itf = NULL;
    CK_VERSION want = { 1, 0 };
    *(void **)&get_itf = dlsym(t->m.lib, "C_GetInterface");
    if (get_itf != NULL &&
        get_itf((CK_UTF8CHAR_PTR)CUSTOS_INTERFACE_NAME, &want, &itf, 0) == CKR_OK && itf != NULL)
        t->vendor = itf->pFunctionList;
}

/* RFC 7512 sec. 2.4: pin-source is a URI; a file: URI or a plain path names a PIN file. */
static const char *pin_source(P11KitUri *const uris[2])
{
    for (int i = 0; i < 2; i++) {
        const char *s = uris[i] != NULL ? p11_kit_uri_get_pin_source(uris[i]) : NULL;
        if (s == NULL)
            continue;
        if (strncmp(s, "file://", 7) == 0)
            return s + 7;
        if (strncmp(s, "file:", 5) == 0)
            return s + 5;
        return s;
    }
    return NULL;
}

static CK_RV login_user(cli_token *t, CK_USER_TYPE who, const char *name, const char *pin)
{
    CK_C_GetInterface get_itf;
    CK_INTERFACE_PTR itf = NULL;
    CK_VERSION v30 = { 3, 0 };
    if (name == NULL)
        return t->m.f->C_Login(t->sh, who, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    /* C_LoginUser is in the 3.0 list only (PKCS#11 3.0 sec. 5.6). */
    *(void **)&get_itf = dlsym(t->m.lib, "C_GetInterface");
    if (get_itf == NULL || get_itf((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &itf, 0) != CKR_OK ||
        itf == NULL || itf->pFunctionList == NULL)
        return CKR_FUNCTION_NOT_SUPPORTED;
    CK_FUNCTION_LIST_3_0_PTR f3 = itf->pFunctionList;
    return f3->C_LoginUser(t->sh, who, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR)name,
                           strlen(name));
}

static int login(cli_token *t, const cli_token_opts *o, CK_USER_TYPE who, P11KitUri *const uris[2])
{
    char pin[CLI_PIN_MAX], err[256], prompt[160];
    const char *file = o->pin_file != NULL ? o->pin_file : pin_source(uris);
    if (o->user != NULL)
        snprintf(prompt, sizeof(prompt), "PIN of %s: ", o->user);
    else
        snprintf(prompt, sizeof(prompt), "%s PIN: ", who == CKU_SO ? "Admin (security officer)" : "User");
    if (cli_read_pin(file, prompt, pin, sizeof(pin), err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return -1;
    }
    CK_RV rv = login_user(t, who, o->user, pin);
    cli_wipe(pin, sizeof(pin));
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    if (rv != CKR_OK) {
        token_err(who == CKU_SO ? "admin login" : "login", rv);
        return -1;
    }
    t->logged_in = true;
    return 0;
}

int cli_token_open(cli_token *t, const cli_token_opts *o, CK_USER_TYPE who)
{
    char err[512], path[PATH_MAX];
    P11KitUri *uris[2] = { NULL, NULL }; /* --token, --key */
    const char *module = o->module;
    int rc = -1;
    CK_RV rv;

    memset(t, 0, sizeof(*t));
    if (is_uri(o->token) && parse_uri(o->token, "--token", &uris[0]) != 0)
        goto out;
    if (is_uri(o->key)) {
        if (parse_uri(o->key, "--key", &uris[1]) != 0 || key_from_uri(t, uris[1]) != 0)
            goto out;
    } else if (o->key != NULL) {
        if (*o->key == '\0' || strlen(o->key) >= sizeof(t->key_label)) {
            cli_err("--key: a label of 1 to %zu bytes", sizeof(t->key_label) - 1);
            goto out;
        }
        snprintf(t->key_label, sizeof(t->key_label), "%s", o->key);
    }
    for (int i = 0; module == NULL && i < 2; i++)
        if (uris[i] != NULL)
            module = p11_kit_uri_get_module_path(uris[i]);
    if (module == NULL) {
        if (cli_default_module(path, sizeof(path)) != 0) {
            cli_err("no PKCS#11 module found: give --module PATH (or set CUSTOS_MODULE)");
            goto out;
        }
        module = path;
    }
    if (cli_module_load(&t->m, module, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        goto out;
    }
    rv = cli_module_init(&t->m, NULL);
    if (rv != CKR_OK) {
        token_err("C_Initialize", rv);
        goto out;
    }
    find_vendor(t);
    if (o->custos_only && t->vendor == NULL) {
        cli_err("%s is not the Custos module: key families are Custos's; on other tokens make a "
                "plain AES key (e.g. pkcs11-tool --keygen) and name it with --key LABEL",
                t->m.path);
        goto out;
    }
    if (pick_slot(t, o, uris) != 0)
        goto out;
    rv = t->m.f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->sh);
    if (rv != CKR_OK) {
        token_err("opening a session", rv);
        goto out;
    }
    t->session = true;
    if (who != CK_UNAVAILABLE_INFORMATION && login(t, o, who, uris) != 0)
        goto out;
    rc = 0;
out:
    for (int i = 0; i < 2; i++)
        if (uris[i] != NULL)
            p11_kit_uri_free(uris[i]);
    if (rc != 0)
        cli_token_close(t);
    return rc;
}

void cli_token_close(cli_token *t)
{
    if (t->logged_in)
        (void)t->m.f->C_Logout(t->sh);
    if (t->session)
        (void)t->m.f->C_CloseSession(t->sh);
    t->logged_in = t->session = false;
    cli_module_unload(&t->m);
}

/* ==== files ===================================================================================== */

/* An output: standard output, or a temporary file beside the target renamed over it at commit. */
typedef struct outfile {
    FILE *f;
    const char *path;      /* the target; NULL for standard output */
    char tmp[PATH_MAX];
} outfile;

static mode_t default_mode(void)
{
    mode_t m = umask(0);
    umask(m);
    return 0666 & ~m;
}

static int out_open(outfile *o, const char *path, mode_t mode)
{
    memset(o, 0, sizeof(*o));
    if (path == NULL || strcmp(path, "-") == 0) {
        o->f = stdout;
        return 0;
    }
    const char *slash = strrchr(path, '/');
    int dl = slash != NULL ? (int)(slash - path + 1) : 0;
    if (snprintf(o->tmp, sizeof(o->tmp), "%.*s.%s.tmp-XXXXXX", dl, path, path + dl) >=
        (int)sizeof(o->tmp)) {
        cli_err("%s: path too long", path);
        return -1;
    }
    int fd = mkostemp(o->tmp, O_CLOEXEC);
    if (fd < 0) {
        cli_err("%s: cannot create a file in its folder: %s", path, strerror(errno));
        return -1;
    }
    if (fchmod(fd, mode) != 0 || (o->f = fdopen(fd, "wb")) == NULL) {
        cli_err("%s: %s", o->tmp, strerror(errno));
        close(fd);
        unlink(o->tmp);
        return -1;
    }
    o->path = path;
    return 0;
}

static void out_discard(outfile *o)
{
    if (o->f == NULL)
        return;
    if (o->path == NULL) {
        fflush(o->f);
    } else {
        fclose(o->f);
        unlink(o->tmp);
    }
    o->f = NULL;
}

/* Flush, sync and rename into place: the target appears complete or not at all. */
static int out_commit(outfile *o)
{
    int rc = 0;
    if (o->path == NULL) {
        rc = fflush(o->f);
        o->f = NULL;
        if (rc != 0)
            cli_err("writing to standard output failed: %s", strerror(errno));
        return rc != 0 ? -1 : 0;
    }
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
        rc = -1;
    if (fclose(o->f) != 0)
        rc = -1;
    o->f = NULL;
    if (rc == 0 && rename(o->tmp, o->path) != 0)
        rc = -1;
    if (rc != 0) {
        cli_err("%s: writing failed: %s", o->path, strerror(errno));
        unlink(o->tmp);
    }
    return rc;
}

static int sink_out(void *arg, const uint8_t *data, size_t len)
{
    outfile *o = arg;
    return fwrite(data, 1, len, o->f) == len ? 0 : -1;
}

static FILE *in_open(const char *path)
{
    if (path == NULL || strcmp(path, "-") == 0)
        return stdin;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        cli_err("%s: %s", path, strerror(errno));
    return f;
}

static void in_close(FILE *f)
{
    if (f != NULL && f != stdin)
        fclose(f);
}

static const char *in_name(const char *path)
{
    return path == NULL || strcmp(path, "-") == 0 ? "standard input" : path;
}

/* Read up to `cap` bytes into a new buffer, starting with `head`. 1: more than cap bytes. */
static int slurp(FILE *in, const uint8_t *head, size_t head_len, size_t cap, uint8_t **buf,
                 size_t *len)
{
    size_t n = head_len, size = head_len + IO_BLOCK;
    uint8_t *b = malloc(size);
    if (b == NULL)
        return -1;
    if (head_len > 0)
        memcpy(b, head, head_len);
    for (;;) {
        if (size - n < IO_BLOCK) {
            uint8_t *p = realloc(b, size * 2);
            if (p == NULL) {
                free(b);
                return -1;
            }
            b = p;
            size *= 2;
        }
        size_t r = fread(b + n, 1, IO_BLOCK, in);
        n += r;
        if (n > cap) {
            free(b);
            return 1;
        }
        if (r < IO_BLOCK)
            break;
    }
    if (ferror(in)) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

static bool has_prefix(const uint8_t *p, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    return n >= pl && memcmp(p, prefix, pl) == 0;
}

/* A text envelope or DEK file ends at most with one "\n" or "\r\n", which is not part of it. */
static size_t text_len(const uint8_t *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\n')
        n--;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    return n;
}

/* Read a whole envelope or DEK file, binary or text (decoded). *text tells which it was. */
static int read_whole(FILE *in, const char *name, size_t bin_cap, uint8_t **bin, size_t *bin_len,
                      bool *text)
{
    uint8_t *raw = NULL;
    size_t n = 0;
    int r = slurp(in, NULL, 0, TEXT_READ_MAX > bin_cap ? TEXT_READ_MAX : bin_cap, &raw, &n);
    if (r != 0) {
        if (r > 0)
            cli_err("%s: larger than %zu MiB: not something this command reads whole", name,
                    (size_t)(TEXT_READ_MAX > bin_cap ? TEXT_READ_MAX : bin_cap) >> 20);
        else
            cli_err("%s: reading failed: %s", name, strerror(errno));
        return -1;
    }
    *text = has_prefix(raw, n, ENV_TEXT_PREFIX) || has_prefix(raw, n, ENV_DEK_TEXT_PREFIX);
    if (!*text) {
        if (n > bin_cap) {
            cli_err("%s: larger than %zu MiB: not something this command reads whole", name,
                    bin_cap >> 20);
            free(raw);
            return -1;
        }
        *bin = raw;
        *bin_len = n;
        return 0;
    }
    env_rv rv = env_from_text((const char *)raw, text_len(raw, n), bin, bin_len);
    free(raw);
    if (rv != ENV_OK) {
        cli_err("%s: %s%s", name, env_strerror(rv),
                rv == ENV_E_TEXT ? " (cus1:/cusk1: then strict unpadded base64url)" : "");
        return -1;
    }
    return 0;
}

/* ==== the envelope commands ===================================================================== */

typedef struct cmd {
    cli_token t;
    cli_token_opts o;
    env_ctx *ctx;
    bool open;
} cmd;

/* The library's line for a failure, with what it means for the user when that helps. */
static int env_fail(cmd *c, env_rv rv, const char *what)
{
    const char *detail = c->ctx != NULL ? env_ctx_error(c->ctx) : "";
    const char *base = env_strerror(rv);
    const char *hint = "";
    /* The context keeps the last detailed line; use it only if it is about this failure. */
    if (strncmp(detail, base, strlen(base)) != 0)
        detail = base;
    if (rv == ENV_E_KEY_NOT_FOUND)
        hint = " (destroyed, never on this token, or not visible to this user)";
    else if (strstr(detail, "CKR_ACTION_PROHIBITED") != NULL)
        hint = " (the user lacks a role: encrypt and dek new need generate, decrypt needs decrypt, "
               "rewrap and encrypt --dek need both)";
    else if (strstr(detail, "CKR_KEY_FUNCTION_NOT_PERMITTED") != NULL)
        hint = " (the key version is suspended, rotated out, pending destruction or outside its dates)";
    else if (strstr(detail, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT") != NULL)
        hint = " (envelopes need an AES KEK: custos key create FAMILY --type aes)";
    else if (strstr(detail, "CKR_USER_NOT_LOGGED_IN") != NULL)
        hint = " (log in: give --pin-file)";
    cli_err("%s%s%s%s", what != NULL ? what : "", what != NULL ? ": " : "", detail, hint);
    return 1;
}

static int cmd_open(cmd *c, CK_USER_TYPE who)
{
    if (cli_token_open(&c->t, &c->o, who) != 0)
        return -1;
    c->open = true;
    if (env_ctx_new(c->t.m.f, c->t.sh, CK_INVALID_HANDLE, &c->ctx) != ENV_OK) {
        cli_err("out of memory");
        return -1;
    }
    return 0;
}

static void cmd_close(cmd *c)
{
    if (c->ctx != NULL)
        env_ctx_free(c->ctx);
    c->ctx = NULL;
    if (c->open)
        cli_token_close(&c->t);
    c->open = false;
}

/* The KEK --key names: by a URI's id= (CKA_ID), else the current version of a family or label. */
static int find_kek(cmd *c, CK_OBJECT_HANDLE *h)
{
    static CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_FUNCTION_LIST_PTR f = c->t.m.f;
    if (c->t.key_id_len == 0) {
        env_rv rv = env_find_key_by_label(c->ctx, c->t.key_label, h);
        return rv == ENV_OK ? 0 : -env_fail(c, rv, "--key");
    }
    CK_ATTRIBUTE q[3] = {
        { CKA_CLASS, &secret, sizeof(secret) },
        { CKA_ID, c->t.key_id, (CK_ULONG)c->t.key_id_len },
        { CKA_LABEL, c->t.key_label, (CK_ULONG)strlen(c->t.key_label) },
    };
    CK_OBJECT_HANDLE hs[2];
    CK_ULONG n = 0;
    CK_RV rv = f->C_FindObjectsInit(c->t.sh, q, c->t.key_label[0] != '\0' ? 3 : 2);
    if (rv == CKR_OK) {
        rv = f->C_FindObjects(c->t.sh, hs, 2, &n);
        (void)f->C_FindObjectsFinal(c->t.sh);
    }
    if (rv != CKR_OK) {
        token_err("finding the --key", rv);
        return -1;
    }
    if (n != 1) {
        cli_err("--key: %s secret key has that id%s", n == 0 ? "no" : "more than one",
                n == 0 ? " (destroyed, never on this token, or not visible to this user)" : "");
        return -1;
    }
    *h = hs[0];
    return 0;
}

/* Options of the envelope commands, beyond the token ones. */
typedef struct eopts {
    const char *context;
    const char *dek;
    const char *out;
    const char *out_dir;
    unsigned aead;       /* with aead_set: --aead */
    bool aead_set, text, in_place, json;
} eopts;

enum { O_CONTEXT = 0x200, O_DEK, O_TEXT, O_IN_PLACE, O_OUT_DIR, O_JSON, O_AEAD };

/* What each command accepts, checked after parsing. */
enum {
    A_TOKEN = 1u << 0, A_KEY = 1u << 1, A_CONTEXT = 1u << 2, A_DEK = 1u << 3, A_TEXT = 1u << 4,
    A_OUT = 1u << 5, A_IN_PLACE = 1u << 6, A_JSON = 1u << 7, A_AEAD = 1u << 8,
};

static const struct {
    int code;
    unsigned allow;
    const char *name;
} OPT_RULES[] = {
    { CLI_OPT_MODULE, A_TOKEN, "--module" }, { CLI_OPT_TOKEN, A_TOKEN, "--token" },
    { CLI_OPT_SLOT, A_TOKEN, "--slot" },     { CLI_OPT_PIN_FILE, A_TOKEN, "--pin-file" },
    { CLI_OPT_USER, A_TOKEN, "--user" },     { CLI_OPT_KEY, A_KEY, "--key" },
    { O_CONTEXT, A_CONTEXT, "--context" },   { O_DEK, A_DEK, "--dek" },
    { O_TEXT, A_TEXT, "--text" },            { 'o', A_OUT, "-o" },
    { O_IN_PLACE, A_IN_PLACE, "--in-place" }, { O_OUT_DIR, A_IN_PLACE, "--out-dir" },
    { O_JSON, A_JSON, "--json" },            { O_AEAD, A_AEAD, "--aead" },
};

/* Parse argv (argv[0] is the command); positional arguments are left at argv[optind..]. */
static int parse(int argc, char **argv, unsigned allow, cmd *c, eopts *e)
{
    static const struct option LONGOPTS[] = {
        CLI_TOKEN_LONGOPTS,
        { "user", required_argument, NULL, CLI_OPT_USER },
        { "key", required_argument, NULL, CLI_OPT_KEY },
        { "context", required_argument, NULL, O_CONTEXT },
        { "dek", required_argument, NULL, O_DEK },
        { "text", no_argument, NULL, O_TEXT },
        { "output", required_argument, NULL, 'o' },
        { "in-place", no_argument, NULL, O_IN_PLACE },
        { "out-dir", required_argument, NULL, O_OUT_DIR },
        { "json", no_argument, NULL, O_JSON },
        { "aead", required_argument, NULL, O_AEAD },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    memset(c, 0, sizeof(*c));
    memset(e, 0, sizeof(*e));
    c->o.slot = -1;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:", LONGOPTS, NULL)) != -1) {
        size_t i;
        for (i = 0; i < NELEM(OPT_RULES); i++)
            if (OPT_RULES[i].code == ch)
                break;
        if (i == NELEM(OPT_RULES))
            return -1; /* getopt said why */
        if (!(OPT_RULES[i].allow & allow)) {
            cli_err("%s does not apply here (see %s --help)", OPT_RULES[i].name, cli_prog);
            return -1;
        }
        switch (ch) {
        case O_CONTEXT: e->context = optarg; break;
        case O_DEK: e->dek = optarg; break;
        case O_TEXT: e->text = true; break;
        case 'o': e->out = optarg; break;
        case O_IN_PLACE: e->in_place = true; break;
        case O_OUT_DIR: e->out_dir = optarg; break;
        case O_JSON: e->json = true; break;
        case O_AEAD:
            if (env_aead_from_name(optarg, &e->aead) != ENV_OK) {
                cli_err("--aead: unknown algorithm '%s' (aes-256-gcm or xchacha20-poly1305)", optarg);
                return -1;
            }
            e->aead_set = true;
            break;
        default:
            if (cli_token_opt(&c->o, ch, optarg) != 0)
                return -1;
        }
    }
    if (c->o.token != NULL && c->o.slot >= 0) {
        cli_err("give --token or --slot, not both");
        return -1;
    }
    return 0;
}

/* --aead: the AEAD of new envelopes and DEK files (default AES-256-GCM). */
static int choose_aead(cmd *c, const eopts *e)
{
    if (!e->aead_set)
        return 0;
    env_rv rv = env_ctx_set_aead(c->ctx, e->aead);
    return rv == ENV_OK ? 0 : -env_fail(c, rv, "--aead");
}

/* At most one positional argument: the input file. */
static int one_input(int argc, char **argv, const char **in)
{
    *in = NULL;
    if (optind < argc)
        *in = argv[optind++];
    if (optind < argc) {
        cli_err("unexpected argument '%s' (see %s --help)", argv[optind], cli_prog);
        return -1;
    }
    return 0;
}

/* ---- encrypt -------------------------------------------------------------------------------------- */

const char encrypt_usage[] =
    "Usage: custos encrypt --key KEY --context CONTEXT [OPTIONS] [INPUT] [-o FILE]\n"
    "\n"
    "Seal INPUT (default: standard input) as an envelope (docs/envelope-format.md): a fresh data\n"
    "key (AES-256) made in the token encrypts the data in 64 KiB chunks with AES-256-GCM, and is\n"
    "stored wrapped under the KEK. Every step runs in the token; no key reaches this program.\n"
    "Needs a user with the generate role (the built-in \"user\" has it; with --dek also decrypt).\n"
    "\n"
    "Options:\n"
    "  --key KEY            the KEK: a Custos key family (its current version), a key label on\n"
    "                       other tokens, or a pkcs11: URI, e.g. 'pkcs11:token=demo;object=tenant42'\n"
    "  --context C          the AAD context stored in clear and bound to every chunk, e.g.\n"
    "                       \"tenant=42,table=users,column=ssn\" (at most 1024 bytes, no control\n"
    "                       characters; default empty). Decrypt can demand it back.\n"
    "  --dek FILE           reuse the data key of a DEK file (custos dek new) instead of a fresh one;\n"
    "                       --key is then optional and must name the DEK file's family\n"
    "  --aead A             the cipher of the data: aes-256-gcm (default) or xchacha20-poly1305\n"
    "                       (a 24-byte random nonce per chunk; the token must list\n"
    "                       CKM_CHACHA20_POLY1305); with --dek it must be the DEK file's\n"
    "  --text               write the text form: \"cus1:\" + base64url and a newline (for database\n"
    "                       columns; at most 64 MiB of text)\n"
    "  -o, --output FILE    write FILE (through a temporary file in its folder, renamed when\n"
    "                       complete); default: standard output\n"
    "  --module PATH        the PKCS#11 module (default: $CUSTOS_MODULE, else the Custos module\n"
    "                       next to this program); any token works, e.g. SoftHSM2\n"
    "  --token T            the token: its label or a pkcs11: URI (default: the only one)\n"
    "  --slot N             the token in slot N\n"
    "  --user NAME          log in as this user (C_LoginUser); default: the user whose PIN it is\n"
    "  --pin-file FILE      the PIN, from the first line of FILE (default: a URI's pin-source, else\n"
    "                       ask on the terminal); never on the command line\n"
    "\n"
    "Exit status: 0 done, 1 failed (one line says why), 2 usage error.\n";

typedef struct membuf {
    uint8_t *p;
    size_t len, cap, max;
    bool over;
} membuf;

static int sink_mem(void *arg, const uint8_t *data, size_t len)
{
    membuf *m = arg;
    if (len > m->max - m->len) {
        m->over = true;
        return -1;
    }
    if (len > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : IO_BLOCK;
        while (cap - m->len < len)
            cap *= 2;
        uint8_t *p = realloc(m->p, cap);
        if (p == NULL)
            return -1;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, data, len);
    m->len += len;
    return 0;
}

/* Read a DEK file (binary or cusk1: text) and check it against --key when given. */
static int load_dek(cmd *c, const char *path, uint8_t **dek, size_t *dek_len)
{
    env_info info;
    bool text;
    FILE *f = in_open(path);
    if (f == NULL)
        return -1;
    int r = read_whole(f, path, ENV_HEADER_MAX, dek, dek_len, &text);
    in_close(f);
    if (r != 0)
        return -1;
    env_rv rv = env_inspect(*dek, *dek_len, &info);
    if (rv != ENV_OK || !info.is_dek_file) {
        cli_err("--dek %s: %s", path, rv != ENV_OK ? env_strerror(rv) : "an envelope, not a DEK file");
        goto fail;
    }
    if (c->t.key_label[0] != '\0' && strcmp(c->t.key_label, info.family) != 0) {
        cli_err("--dek %s: the DEK file belongs to family \"%s\", not \"%s\"", path, info.family,
                c->t.key_label);
        goto fail;
    }
    return 0;
fail:
    free(*dek);
    *dek = NULL;
    return -1;
}

int encrypt_main(int argc, char **argv)
{
    cmd c;
    eopts e;
    outfile out = { 0 };
    membuf m = { NULL, 0, 0, TEXT_BIN_MAX, false };
    uint8_t *dek = NULL, *buf = NULL;
    size_t dek_len = 0;
    char *text = NULL;
    const char *inp;
    FILE *in = NULL;
    env_writer *w = NULL;
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    int status = 1;
    env_rv rv;

    if (parse(argc, argv, A_TOKEN | A_KEY | A_CONTEXT | A_DEK | A_TEXT | A_OUT | A_AEAD, &c, &e) != 0 ||
        one_input(argc, argv, &inp) != 0)
        return 2;
    if (c.o.key == NULL && e.dek == NULL) {
        cli_err("give --key KEY (a key family, label or pkcs11: URI) or --dek FILE");
        return 2;
    }
    if (!e.text && (e.out == NULL || strcmp(e.out, "-") == 0) && isatty(STDOUT_FILENO)) {
        cli_err("refusing to write a binary envelope to a terminal: use -o FILE, --text or a redirect");
        return 2;
    }
    const char *context = e.context != NULL ? e.context : "";
    if ((in = in_open(inp)) == NULL || cmd_open(&c, CKU_USER) != 0 || choose_aead(&c, &e) != 0)
        goto out;
    if (e.dek != NULL) {
        if (load_dek(&c, e.dek, &dek, &dek_len) != 0)
            goto out;
    } else {
        if (find_kek(&c, &kek) != 0)
            goto out;
        env_ctx_set_kek(c.ctx, kek);
    }
    if (out_open(&out, e.out, default_mode()) != 0)
        goto out;
    rv = env_seal_begin(c.ctx, context, dek, dek_len, e.text ? sink_mem : sink_out,
                        e.text ? (void *)&m : (void *)&out, &w);
    if (rv != ENV_OK) {
        env_fail(&c, rv, NULL);
        goto out;
    }
    buf = malloc(IO_BLOCK);
    if (buf == NULL) {
        cli_err("out of memory");
        goto out;
    }
    for (;;) {
        size_t n = fread(buf, 1, IO_BLOCK, in);
        if (n > 0 && (rv = env_seal_update(w, buf, n)) != ENV_OK)
            break;
        if (n < IO_BLOCK)
            break;
    }
    cli_wipe(buf, IO_BLOCK);
    if (rv == ENV_OK && ferror(in)) {
        cli_err("%s: reading failed: %s", in_name(inp), strerror(errno));
        goto out;
    }
    if (rv == ENV_OK)
        rv = env_seal_final(w);
    else
        env_seal_abort(w);
    w = NULL;
    if (m.over) {
        cli_err("the envelope is too large for --text (64 MiB of text at most): use the binary form");
        goto out;
    }
    if (rv != ENV_OK) {
        env_fail(&c, rv, NULL);
        goto out;
    }
    if (e.text) {
        rv = env_to_text(m.p, m.len, &text);
        if (rv != ENV_OK) {
            cli_err("text form: %s", env_strerror(rv));
            goto out;
        }
        if (fputs(text, out.f) == EOF || fputc('\n', out.f) == EOF) {
            cli_err("writing failed: %s", strerror(errno));
            goto out;
        }
    }
    if (out_commit(&out) == 0)
        status = 0;
out:
    env_seal_abort(w);
    out_discard(&out);
    in_close(in);
    free(buf);
    free(m.p);
    free(text);
    free(dek);
    cmd_close(&c);
    return status;
}

/* ---- decrypt -------------------------------------------------------------------------------------- */

const char decrypt_usage[] =
    "Usage: custos decrypt [--context CONTEXT] [OPTIONS] [INPUT] [-o FILE]\n"
    "\n"
    "Open an envelope (binary, or the \"cus1:\" text form) from INPUT (default: standard input).\n"
    "The token finds the KEK the envelope names (family and version: older versions still\n"
    "decrypt after a rotation), unwraps the data key and checks every chunk's tag.\n"
    "Needs a user with the decrypt role (the built-in \"user\" has it).\n"
    "\n"
    "Nothing unverified is ever released: with -o FILE the file appears only once every tag has\n"
    "verified (a temporary file in its folder is renamed); on standard output each chunk is\n"
    "written only after it verified, and an envelope cut short ends with an error (exit 1).\n"
    "\n"
    "Options:\n"
    "  --context C          fail unless the envelope was sealed for exactly this context\n"
    "  -o, --output FILE    write the plaintext to FILE; default: standard output\n"
    "  --module PATH        the PKCS#11 module (default: $CUSTOS_MODULE, else the Custos module\n"
    "                       next to this program)\n"
    "  --token T            the token: its label or a pkcs11: URI (default: the only one)\n"
    "  --slot N             the token in slot N\n"
    "  --user NAME          log in as this user (C_LoginUser)\n"
    "  --pin-file FILE      the PIN, from the first line of FILE (default: ask on the terminal)\n"
    "\n"
    "Exit status: 0 done, 1 failed (one line says why: a field, a chunk, a key, a context),\n"
    "2 usage error.\n";

int decrypt_main(int argc, char **argv)
{
    cmd c;
    eopts e;
    outfile out = { 0 };
    const char *inp;
    FILE *in = NULL;
    env_reader *r = NULL;
    uint8_t *buf = NULL, *bin = NULL;
    size_t bin_len = 0;
    int status = 1;
    env_rv rv = ENV_OK;

    if (parse(argc, argv, A_TOKEN | A_CONTEXT | A_OUT, &c, &e) != 0 ||
        one_input(argc, argv, &inp) != 0)
        return 2;
    if ((in = in_open(inp)) == NULL)
        return 1;
    buf = malloc(IO_BLOCK);
    if (buf == NULL) {
        cli_err("out of memory");
        goto out;
    }
    size_t n = fread(buf, 1, IO_BLOCK, in);
    if (has_prefix(buf, n, ENV_DEK_TEXT_PREFIX) || has_prefix(buf, n, "CUSK")) {
        cli_err("%s: a DEK file, not an envelope (custos inspect shows it)", in_name(inp));
        goto out;
    }
    bool text = has_prefix(buf, n, ENV_TEXT_PREFIX);
    if (text) {
        uint8_t *raw = NULL;
        size_t rl = 0;
        int sr = n == IO_BLOCK ? slurp(in, buf, n, TEXT_READ_MAX, &raw, &rl) : 0;
        if (sr > 0) {
            cli_err("%s: a text envelope larger than 64 MiB (the text form's limit)", in_name(inp));
            goto out;
        }
        if (sr < 0) {
            cli_err("%s: reading failed: %s", in_name(inp), strerror(errno));
            goto out;
        }
        rv = raw != NULL ? env_from_text((char *)raw, text_len(raw, rl), &bin, &bin_len)
                         : env_from_text((char *)buf, text_len(buf, n), &bin, &bin_len);
        free(raw);
        if (rv != ENV_OK) {
            cli_err("%s: %s%s", in_name(inp), env_strerror(rv),
                    rv == ENV_E_TEXT ? " (cus1: then strict unpadded base64url)" : "");
            goto out;
        }
    }
    if (cmd_open(&c, CKU_USER) != 0 || out_open(&out, e.out, default_mode()) != 0)
        goto out;
    rv = env_open_begin(c.ctx, e.context, sink_out, &out, &r);
    if (rv == ENV_OK && text) {
        rv = env_open_update(r, bin, bin_len);
    } else if (rv == ENV_OK) {
        for (;;) {
            if (n > 0 && (rv = env_open_update(r, buf, n)) != ENV_OK)
                break;
            if (n < IO_BLOCK)
                break;
            n = fread(buf, 1, IO_BLOCK, in);
        }
        if (rv == ENV_OK && ferror(in)) {
            cli_err("%s: reading failed: %s", in_name(inp), strerror(errno));
            goto out;
        }
    }
    if (rv == ENV_OK) {
        rv = env_open_final(r);
        r = NULL;
    }
    if (rv != ENV_OK) {
        env_fail(&c, rv, in_name(inp));
        goto out;
    }
    if (out_commit(&out) == 0)
        status = 0;
out:
    env_open_abort(r);
    out_discard(&out);
    in_close(in);
    free(buf);
    free(bin);
    cmd_close(&c);
    return status;
}

/* ---- inspect -------------------------------------------------------------------------------------- */

const char inspect_usage[] =
    "Usage: custos inspect [--json] [INPUT]\n"
    "\n"
    "Describe an envelope or a DEK file (binary or text form) from INPUT (default: standard\n"
    "input) without any key or token: kind, format version, key family and KEK version, wrap\n"
    "mechanism, AEAD algorithm, chunk size, context, header length and sizes. Never shows the\n"
    "wrapped data key or the nonces. The header is parsed strictly; the tags are not checked\n"
    "(decrypt does that).\n"
    "\n"
    "Options:\n"
    "  --json               one JSON object\n"
    "\n"
    "Exit status: 0 done, 1 not a valid envelope header (one line says why), 2 usage error.\n";

typedef struct sizes {
    unsigned long long total;    /* bytes of the envelope */
    unsigned long long chunks;   /* 0: the body is malformed */
    unsigned long long plain;
} sizes;

/* docs/envelope-format.md sec. 2.3: full pieces of C + 16 bytes, a final one of 16..C + 16. */
static void body_sizes(const env_info *info, unsigned long long total, sizes *s)
{
    unsigned long long piece = info->chunk_size + ENV_TAG_LEN;
    unsigned long long body = total - info->header_len;
    s->total = total;
    s->chunks = body == 0 ? 0 : (body + piece - 1) / piece;
    unsigned long long last = body - (s->chunks > 0 ? (s->chunks - 1) * piece : 0);
    if (s->chunks == 0 || last < ENV_TAG_LEN || (last == ENV_TAG_LEN && s->chunks > 1)) {
        s->chunks = 0;
        s->plain = 0;
        return;
    }
    s->plain = body - s->chunks * ENV_TAG_LEN;
}

static void print_info(const env_info *i, const sizes *s, bool text, bool json)
{
    const char *kind = i->is_dek_file ? "dek-file" : "envelope";
    if (json) {
        printf("{\"kind\":\"%s\",\"form\":\"%s\",\"format_version\":%u,\"family\":", kind,
               text ? "text" : "binary", i->format_version);
        cli_json_string(stdout, i->family);
        printf(",\"kek_version\":%lu,\"wrap_mechanism\":\"%s\",\"wrap_mechanism_code\":%lu,"
               "\"wrapped_dek_len\":%zu",
               i->kek_version, i->wrap_name, (unsigned long)i->wrap_mech, i->wrapped_dek_len);
        printf(",\"algorithm\":\"%s\"", i->aead_name);
        if (!i->is_dek_file) {
            printf(",\"chunk_size\":%zu,\"context\":", i->chunk_size);
            cli_json_string(stdout, i->context);
            printf(",\"header_len\":%zu,\"size\":%llu", i->header_len, s->total);
            if (s->chunks > 0)
                printf(",\"chunks\":%llu,\"plaintext_size\":%llu", s->chunks, s->plain);
            else
                printf(",\"chunks\":null,\"plaintext_size\":null");
        }
        printf("}\n");
        return;
    }
    printf("kind:            %s (%s form), format version %u\n", kind, text ? "text" : "binary",
           i->format_version);
    printf("family:          %s\n", i->family);
    if (i->kek_version != 0)
        printf("kek version:     %lu\n", i->kek_version);
    else
        printf("kek version:     0 (a plain KEK: the token has no key versions)\n");
    printf("wrap mechanism:  %s (0x%lX), wrapped key %zu bytes\n", i->wrap_name,
           (unsigned long)i->wrap_mech, i->wrapped_dek_len);
    printf("algorithm:       %s\n", i->aead_name);
    if (i->is_dek_file)
        return;
    printf("chunk size:      %zu bytes\n", i->chunk_size);
    printf("context:         %s\n", i->context_len > 0 ? i->context : "(empty)");
    printf("header:          %zu bytes\n", i->header_len);
    if (s->chunks > 0)
        printf("size:            %llu bytes: %llu chunk%s, %llu bytes of plaintext\n", s->total,
               s->chunks, s->chunks == 1 ? "" : "s", s->plain);
    else
        printf("size:            %llu bytes (the body is not a whole number of chunks)\n", s->total);
}

int inspect_main(int argc, char **argv)
{
    cmd c;
    eopts e;
    const char *inp;
    FILE *in;
    uint8_t *buf = NULL, *bin = NULL;
    size_t bin_len = 0;
    env_info info;
    sizes s = { 0, 0, 0 };
    int status = 1;

    if (parse(argc, argv, A_JSON, &c, &e) != 0 || one_input(argc, argv, &inp) != 0)
        return 2;
    if ((in = in_open(inp)) == NULL)
        return 1;
    buf = malloc(IO_BLOCK);
    if (buf == NULL) {
        cli_err("out of memory");
        goto out;
    }
    size_t n = fread(buf, 1, IO_BLOCK, in);
    bool text = has_prefix(buf, n, ENV_TEXT_PREFIX) || has_prefix(buf, n, ENV_DEK_TEXT_PREFIX);
    unsigned long long total = n;
    if (text) {
        uint8_t *raw = NULL;
        size_t rl = n;
        int sr = n == IO_BLOCK ? slurp(in, buf, n, TEXT_READ_MAX, &raw, &rl) : 0;
        if (sr != 0) {
            cli_err("%s: %s", in_name(inp),
                    sr > 0 ? "a text envelope larger than 64 MiB (the text form's limit)"
                           : "reading failed");
            goto out;
        }
        env_rv rv = env_from_text(raw != NULL ? (char *)raw : (char *)buf,
                                  text_len(raw != NULL ? raw : buf, rl), &bin, &bin_len);
        free(raw);
        if (rv != ENV_OK) {
            cli_err("%s: %s%s", in_name(inp), env_strerror(rv),
                    rv == ENV_E_TEXT ? " (cus1: then strict unpadded base64url)" : "");
            goto out;
        }
        total = bin_len;
    } else if (n == IO_BLOCK) {
        /* Only the header (in the first block) is parsed; the rest is counted. */
        uint8_t *more = malloc(IO_BLOCK);
        size_t r;
        if (more == NULL) {
            cli_err("out of memory");
            goto out;
        }
        while ((r = fread(more, 1, IO_BLOCK, in)) > 0)
            total += r;
        free(more);
    }
    if (!text && ferror(in)) {
        cli_err("%s: reading failed: %s", in_name(inp), strerror(errno));
        goto out;
    }
    env_rv rv = text ? env_inspect(bin, bin_len, &info) : env_inspect(buf, n, &info);
    if (rv != ENV_OK) {
        cli_err("%s: %s", in_name(inp), env_strerror(rv));
        goto out;
    }
    if (info.is_dek_file && !text && total != info.header_len) {
        cli_err("%s: %s", in_name(inp), env_strerror(ENV_E_TRAILING));
        goto out;
    }
    if (!info.is_dek_file)
        body_sizes(&info, total, &s);
    print_info(&info, &s, text, e.json);
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    in_close(in);
    free(buf);
    free(bin);
    return status;
}

/* ---- rewrap --------------------------------------------------------------------------------------- */

const char rewrap_usage[] =
    "Usage: custos rewrap [OPTIONS] ENVELOPE... [--in-place | --out-dir DIR | -o FILE]\n"
    "\n"
    "Move envelopes and DEK files (binary or text form) to the current version of their key\n"
    "family, or to the KEK --key names. Only the key block changes: the data key is unwrapped\n"
    "and wrapped again inside the token (docs/key-families.md, \"Re-wrapping without exposure\"),\n"
    "and the encrypted body is copied unchanged. An envelope already under that KEK is left as\n"
    "it is. Needs a user with both the generate and decrypt roles, e.g. the built-in \"user\".\n"
    "\n"
    "Output (each file is written through a temporary file in its folder, then renamed):\n"
    "  --in-place           replace each ENVELOPE (keeping its permissions)\n"
    "  --out-dir DIR        write DIR/<name of ENVELOPE>\n"
    "  -o, --output FILE    one ENVELOPE only: write FILE; without any of these, one ENVELOPE\n"
    "                       goes to standard output\n"
    "\n"
    "Options:\n"
    "  --key KEY            wrap under this KEK (family, label or pkcs11: URI) instead of the\n"
    "                       current version of each envelope's own family\n"
    "  --module PATH, --token T, --slot N, --user NAME, --pin-file FILE\n"
    "                       as for custos encrypt\n"
    "\n"
    "On a terminal a progress bar is drawn on standard error. At the end: \"N rewrapped, M already\n"
    "current, K failed\" (on standard error when the envelope went to standard output).\n"
    "Exit status: 0 all done, 1 some failed (one line each says why), 2 usage error.\n";

/* The KEK each family moves to, looked up once per run. */
typedef struct target {
    char family[ENV_FAMILY_MAX + 1];
    CK_OBJECT_HANDLE kek;
    unsigned long version;
} target;

typedef struct rewrap_run {
    cmd *c;
    const eopts *e;
    target fixed;          /* --key */
    bool have_fixed;
    target *cache;
    size_t ncache;
    unsigned long done, current, failed;
} rewrap_run;

static env_rv target_for(rewrap_run *run, const char *family, target **out)
{
    if (run->have_fixed) {
        *out = &run->fixed;
        return ENV_OK;
    }
    for (size_t i = 0; i < run->ncache; i++)
        if (strcmp(run->cache[i].family, family) == 0) {
            *out = &run->cache[i];
            return ENV_OK;
        }
    target t;
    char fam[ENV_FAMILY_MAX + 1];
    env_rv rv = env_find_key_by_label(run->c->ctx, family, &t.kek);
    if (rv == ENV_OK)
        rv = env_key_identity(run->c->ctx, t.kek, fam, &t.version);
    if (rv != ENV_OK)
        return rv;
    snprintf(t.family, sizeof(t.family), "%s", fam);
    target *p = realloc(run->cache, (run->ncache + 1) * sizeof(*p));
    if (p == NULL)
        return ENV_E_NOMEM;
    run->cache = p;
    p[run->ncache] = t;
    *out = &p[run->ncache++];
    return ENV_OK;
}

/* Write the new form of one file: `head` (new header or whole text/DEK file), then, for a binary
 * envelope, the old bytes after the old header: the rest of `first` and what is left of `in`. */
static int write_new(const char *dest, mode_t mode, const uint8_t *head, size_t head_len,
                     const uint8_t *first, size_t first_len, FILE *in, bool more)
{
    outfile out;
    uint8_t *buf = NULL;
    if (out_open(&out, dest, mode) != 0)
        return -1;
    bool ok = fwrite(head, 1, head_len, out.f) == head_len &&
              (first_len == 0 || fwrite(first, 1, first_len, out.f) == first_len);
    if (ok && more) {
        buf = malloc(IO_BLOCK);
        ok = buf != NULL;
        size_t n;
        while (ok && (n = fread(buf, 1, IO_BLOCK, in)) > 0)
            ok = fwrite(buf, 1, n, out.f) == n;
        ok = ok && !ferror(in);
        free(buf);
    }
    if (!ok) {
        cli_err("%s: copying failed: %s", dest != NULL ? dest : "standard output", strerror(errno));
        out_discard(&out);
        return -1;
    }
    return out_commit(&out);
}

/* 0 rewrapped, 1 already current, -1 failed (said why). */
static int rewrap_one(rewrap_run *run, const char *path, const char *dest)
{
    cmd *c = run->c;
    const char *name = in_name(path);
    uint8_t *buf = NULL, *raw = NULL, *bin = NULL, *nb = NULL;
    char *text = NULL;
    size_t n, rl = 0, bin_len = 0, nl = 0, ohl = 0;
    env_info info;
    target *t;
    struct stat st;
    int rc = -1;
    env_rv rv;
    FILE *in = in_open(path);

    if (in == NULL)
        return -1;
    mode_t mode = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) && dest == path
                      ? (st.st_mode & 07777)
                      : default_mode();
    buf = malloc(IO_BLOCK);
    if (buf == NULL) {
        cli_err("out of memory");
        goto out;
    }
    n = fread(buf, 1, IO_BLOCK, in);
    bool text_form = has_prefix(buf, n, ENV_TEXT_PREFIX) || has_prefix(buf, n, ENV_DEK_TEXT_PREFIX);
    bool more = n == IO_BLOCK;
    if (text_form) {
        int sr = slurp(in, buf, n, TEXT_READ_MAX, &raw, &rl);
        if (sr != 0) {
            cli_err("%s: %s", name, sr > 0 ? "a text envelope larger than 64 MiB" : "reading failed");
            goto out;
        }
        rv = env_from_text((char *)raw, text_len(raw, rl), &bin, &bin_len);
        if (rv != ENV_OK) {
            cli_err("%s: %s", name, env_strerror(rv));
            goto out;
        }
        more = false;
    } else {
        bin = buf;
        bin_len = n;
    }
    rv = env_inspect(bin, bin_len, &info);
    if (rv == ENV_OK && info.is_dek_file && (more || bin_len != info.header_len))
        rv = ENV_E_TRAILING;
    if (rv != ENV_OK) {
        cli_err("%s: %s", name, env_strerror(rv));
        goto out;
    }
    if ((rv = target_for(run, info.family, &t)) != ENV_OK) {
        env_fail(c, rv, name);
        goto out;
    }
    if (strcmp(t->family, info.family) == 0 && t->version == info.kek_version) {
        /* Already under that KEK: an in-place run leaves the file alone; otherwise copy it. */
        rc = dest == path ? 1
                          : (write_new(dest, mode, text_form ? raw : buf, text_form ? rl : n, NULL, 0,
                                       in, more) == 0
                                 ? 1
                                 : -1);
        goto out;
    }
    env_ctx_set_kek(c->ctx, t->kek);
    if (info.is_dek_file)
        rv = env_dek_rewrap(c->ctx, CK_INVALID_HANDLE, bin, bin_len, &nb, &nl);
    else if (text_form)
        rv = env_rewrap_buf(c->ctx, CK_INVALID_HANDLE, bin, bin_len, &nb, &nl);
    else
        rv = env_rewrap(c->ctx, CK_INVALID_HANDLE, bin, bin_len, &nb, &nl, &ohl);
    if (rv != ENV_OK) {
        env_fail(c, rv, name);
        goto out;
    }
    if (text_form) {
        rv = env_to_text(nb, nl, &text);
        if (rv != ENV_OK) {
            cli_err("%s: text form: %s", name, env_strerror(rv));
            goto out;
        }
        /* Keep the line end the file had. */
        size_t tl = strlen(text), keep = rl - text_len(raw, rl);
        char *p = realloc(text, tl + keep + 1);
        if (p == NULL) {
            cli_err("out of memory");
            goto out;
        }
        text = p;
        memcpy(text + tl, raw + rl - keep, keep);
        text[tl + keep] = '\0';
        rc = write_new(dest, mode, (uint8_t *)text, tl + keep, NULL, 0, in, false);
    } else if (info.is_dek_file) {
        rc = write_new(dest, mode, nb, nl, NULL, 0, in, false);
    } else {
        rc = write_new(dest, mode, nb, nl, buf + ohl, n - ohl, in, more);
    }
out:
    in_close(in);
    free(buf);
    free(raw);
    if (bin != buf)
        free(bin);
    free(nb);
    free(text);
    return rc;
}

static void progress(size_t done, size_t total)
{
    static const char BAR[] = "########################################";
    int width = (int)sizeof(BAR) - 1;
    int fill = (int)(done * (size_t)width / total);
    fprintf(stderr, "\r[%.*s%*s] %zu/%zu", fill, BAR, width - fill, "", done, total);
    fflush(stderr);
}

int rewrap_main(int argc, char **argv)
{
    cmd c;
    eopts e;
    rewrap_run run;
    char dest[PATH_MAX];
    int status = 1;

    memset(&run, 0, sizeof(run));
    if (parse(argc, argv, A_TOKEN | A_KEY | A_OUT | A_IN_PLACE, &c, &e) != 0)
        return 2;
    int nfiles = argc - optind;
    char **files = argv + optind;
    if (nfiles == 0) {
        cli_err("give one or more ENVELOPE files (see custos rewrap --help)");
        return 2;
    }
    if ((e.in_place ? 1 : 0) + (e.out_dir != NULL ? 1 : 0) + (e.out != NULL ? 1 : 0) > 1) {
        cli_err("give one of --in-place, --out-dir DIR and -o FILE");
        return 2;
    }
    if (nfiles > 1 && !e.in_place && e.out_dir == NULL) {
        cli_err("%d envelopes: give --in-place or --out-dir DIR", nfiles);
        return 2;
    }
    for (int i = 0; i < nfiles; i++)
        if (strcmp(files[i], "-") == 0 && (e.in_place || nfiles > 1)) {
            cli_err("standard input ('-') only as the one ENVELOPE, without --in-place");
            return 2;
        }
    bool to_stdout = !e.in_place && e.out_dir == NULL && (e.out == NULL || strcmp(e.out, "-") == 0);
    run.c = &c;
    run.e = &e;
    if (cmd_open(&c, CKU_USER) != 0)
        goto out;
    if (c.o.key != NULL) {
        env_rv rv;
        char fam[ENV_FAMILY_MAX + 1];
        if (find_kek(&c, &run.fixed.kek) != 0)
            goto out;
        if ((rv = env_key_identity(c.ctx, run.fixed.kek, fam, &run.fixed.version)) != ENV_OK) {
            env_fail(&c, rv, "--key");
            goto out;
        }
        snprintf(run.fixed.family, sizeof(run.fixed.family), "%s", fam);
        run.have_fixed = true;
    }
    bool bar = nfiles > 1 && isatty(STDERR_FILENO);
    for (int i = 0; i < nfiles; i++) {
        const char *d = files[i];
        if (e.out_dir != NULL) {
            const char *base = strrchr(files[i], '/');
            base = base != NULL ? base + 1 : files[i];
            if (snprintf(dest, sizeof(dest), "%s/%s", e.out_dir, base) >= (int)sizeof(dest)) {
                cli_err("%s: path too long", files[i]);
                run.failed++;
                continue;
            }
            d = dest;
        } else if (!e.in_place) {
            d = to_stdout ? NULL : e.out;
        }
        if (bar)
            fputs("\r\033[K", stderr);
        int r = rewrap_one(&run, files[i], d);
        if (r == 0)
            run.done++;
        else if (r == 1)
            run.current++;
        else
            run.failed++;
        if (bar)
            progress((size_t)i + 1, (size_t)nfiles);
    }
    if (bar)
        fputs("\r\033[K", stderr);
    fprintf(to_stdout ? stderr : stdout, "%lu rewrapped, %lu already current, %lu failed\n",
            run.done, run.current, run.failed);
    status = run.failed == 0 ? 0 : 1;
out:
    free(run.cache);
    cmd_close(&c);
    return status;
}

/* ---- dek ------------------------------------------------------------------------------------------ */

const char dek_usage[] =
    "Usage: custos dek new KEY [--text] [-o FILE] [OPTIONS]\n"
    "\n"
    "Make a data key (AES-256) for one dataset in the token and write it wrapped under KEY (a key\n"
    "family's current version, a key label on other tokens, or a pkcs11: URI) as a DEK file\n"
    "(docs/envelope-format.md sec. 3). `custos encrypt --dek FILE` then seals many envelopes\n"
    "under that one data key; `custos rewrap` moves the DEK file to a newer KEK version; `custos\n"
    "inspect` describes it. The data key never leaves the token unwrapped.\n"
    "Needs a user with the generate role.\n"
    "\n"
    "Options:\n"
    "  --aead A             the data key's cipher: aes-256-gcm (default, an AES-256 key) or\n"
    "                       xchacha20-poly1305 (a ChaCha20 key), as for custos encrypt\n"
    "  --text               write the text form (\"cusk1:\" + base64url and a newline)\n"
    "  -o, --output FILE    write FILE (through a temporary file); default: standard output\n"
    "  --key KEY            the same as the KEY argument\n"
    "  --module PATH, --token T, --slot N, --user NAME, --pin-file FILE\n"
    "                       as for custos encrypt\n"
    "\n"
    "Exit status: 0 done, 1 failed (one line says why), 2 usage error.\n";

int dek_main(int argc, char **argv)
{
    cmd c;
    eopts e;
    outfile out = { 0 };
    CK_OBJECT_HANDLE kek;
    uint8_t *dek = NULL;
    size_t dek_len = 0;
    char *text = NULL;
    int status = 1;

    if (parse(argc, argv, A_TOKEN | A_KEY | A_TEXT | A_OUT | A_AEAD, &c, &e) != 0)
        return 2;
    if (optind >= argc || strcmp(argv[optind], "new") != 0) {
        cli_err(optind < argc ? "unknown action '%s' (only: new)" : "give an action: new KEY%s",
                optind < argc ? argv[optind] : "");
        return 2;
    }
    optind++;
    if (optind < argc && c.o.key == NULL)
        c.o.key = argv[optind++];
    if (optind < argc) {
        cli_err("unexpected argument '%s' (see custos dek --help)", argv[optind]);
        return 2;
    }
    if (c.o.key == NULL) {
        cli_err("new: give the KEY (a key family, label or pkcs11: URI)");
        return 2;
    }
    if (!e.text && (e.out == NULL || strcmp(e.out, "-") == 0) && isatty(STDOUT_FILENO)) {
        cli_err("refusing to write a binary DEK file to a terminal: use -o FILE or --text");
        return 2;
    }
    if (cmd_open(&c, CKU_USER) != 0 || choose_aead(&c, &e) != 0 || find_kek(&c, &kek) != 0)
        goto out;
    env_ctx_set_kek(c.ctx, kek);
    env_rv rv = env_dek_new(c.ctx, &dek, &dek_len);
    if (rv != ENV_OK) {
        env_fail(&c, rv, NULL);
        goto out;
    }
    if (e.text && (rv = env_to_text(dek, dek_len, &text)) != ENV_OK) {
        cli_err("text form: %s", env_strerror(rv));
        goto out;
    }
    if (out_open(&out, e.out, default_mode()) != 0)
        goto out;
    bool ok = e.text ? fputs(text, out.f) != EOF && fputc('\n', out.f) != EOF
                     : fwrite(dek, 1, dek_len, out.f) == dek_len;
    if (!ok) {
        cli_err("writing failed: %s", strerror(errno));
        goto out;
    }
    if (out_commit(&out) == 0)
        status = 0;
out:
    out_discard(&out);
    free(dek);
    free(text);
    cmd_close(&c);
    return status;
}
