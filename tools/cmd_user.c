/* cmd_user.c -- `custos user add|remove|passwd|roles|list|disable|enable` (docs/roles.md): user
 * management through the module's "Vendor Custos" interface (pkcs11/custos.h), as an admin logged in
 * with C_Login(CKU_SO) or C_LoginUser(CKU_SO, name). The module checks and audits every change; this
 * file asks, reads PINs from a file or the terminal, and turns CK_RV codes into one clear line. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#include "cli.h"

#include <dlfcn.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "custos.h"

const char user_usage[] =
    "Usage: custos user ACTION [NAME] [OPTIONS]\n"
    "\n"
    "Manage a Custos token's users and their roles (docs/roles.md), as an admin. The admin PIN is\n"
    "read from --pin-file or asked for on the terminal (echo off); it is never printed.\n"
    "\n"
    "Actions:\n"
    "  add NAME --roles R   add a user with roles R and a new PIN\n"
    "  remove NAME          remove a user (not yourself); its keys stay on the token\n"
    "  passwd NAME          set a new PIN for a user; this also lifts a lockout\n"
    "  roles NAME --roles R replace a user's roles (admin <-> non-admin needs remove and add)\n"
    "  list                 name, roles, state (enabled, disabled or locked) and failed logins\n"
    "  disable NAME         the user can no longer log in (CKR_PIN_LOCKED); nothing is deleted\n"
    "  enable NAME          allow a disabled user to log in again, with the same PIN\n"
    "\n"
    "Roles (comma-separated): admin, generate, decrypt, audit. admin takes no other role.\n"
    "  admin     users, roles and key lifecycle; logs in as the security officer; no data keys\n"
    "  generate  the write path: create keys, wrap, encrypt, sign\n"
    "  decrypt   the read path: unwrap, decrypt, verify\n"
    "  audit     read, verify and export the audit trail (custos audit)\n"
    "\n"
    "Options:\n"
    "  --module PATH        the Custos module (default: $CUSTOS_MODULE, else the build tree's\n"
    "                       .libs/custos-pkcs11.so or the installed lib/pkcs11/custos-pkcs11.so\n"
    "                       next to this program)\n"
    "  --token LABEL        the token with this label (default: the only initialised one)\n"
    "  --slot N             the token in slot N\n"
    "  --admin NAME         log in as this admin (C_LoginUser); default: the admin whose PIN it is\n"
    "  --pin-file FILE      the admin PIN, from the first line of FILE (default: ask)\n"
    "  --new-pin-file FILE  add, passwd: the user's new PIN from FILE (default: ask twice)\n"
    "  --roles R            add, roles: the roles, e.g. generate,decrypt\n"
    "  --json               list: one JSON object per user and line\n"
    "\n"
    "Exit status: 0 done, 1 the token refused or failed (one line says why), 2 usage error.\n";

/* What a step is, for choosing the words of an error. */
enum {
    S_ADD = 1u << 0,
    S_REMOVE = 1u << 1,
    S_PASSWD = 1u << 2,
    S_ROLES = 1u << 3,
    S_LIST = 1u << 4,
    S_DISABLE = 1u << 5,
    S_ENABLE = 1u << 6,
    S_LOGIN = 1u << 7,
    S_ANY = ~0u,
};

typedef struct opts {
    const char *module;
    const char *label;
    long slot;               /* -1: not given */
    const char *admin;
    const char *pin_file;
    const char *new_pin_file;
    const char *roles_arg;
    unsigned long roles;
    bool json;
    const char *name;        /* the user the action is about */
} opts;

typedef struct ctx {
    cli_module m;
    CK_C_GetInterface get_itf;
    CK_CUSTOS_FUNCTION_LIST_PTR v;
    CK_SESSION_HANDLE sh;
    bool session;
    bool logged_in;
} ctx;

typedef int (*action_fn)(ctx *c, const opts *o);

/* ---- roles ----------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned long bit;
} ROLES[] = {
    { "admin", CUSTOS_ROLE_ADMIN },
    { "generate", CUSTOS_ROLE_GENERATE },
    { "decrypt", CUSTOS_ROLE_DECRYPT },
    { "audit", CUSTOS_ROLE_AUDIT },
};

static int parse_roles(const char *s, unsigned long *out)
{
    unsigned long bits = 0;
    const char *p = s;

    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        size_t i;
        for (i = 0; i < NELEM(ROLES); i++)
            if (n == strlen(ROLES[i].name) && strncmp(p, ROLES[i].name, n) == 0)
                break;
        if (i == NELEM(ROLES)) {
            cli_err("--roles: unknown role '%.*s' (admin, generate, decrypt, audit)", (int)n, p);
            return -1;
        }
        bits |= ROLES[i].bit;
        p += n;
        if (*p == ',')
            p++;
    }
    if (bits == 0) {
        cli_err("--roles: give at least one role (admin, generate, decrypt, audit)");
        return -1;
    }
    /* docs/roles.md: an admin manages keys and never uses them. */
    if ((bits & CUSTOS_ROLE_ADMIN) && bits != CUSTOS_ROLE_ADMIN) {
        cli_err("--roles: admin takes no other role");
        return -1;
    }
    *out = bits;
    return 0;
}

/* "generate,decrypt" into buf; unknown bits as a hex number so nothing is hidden. */
static void roles_text(unsigned long bits, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NELEM(ROLES); i++)
        if (bits & ROLES[i].bit)
            len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s", len ? "," : "",
                                    ROLES[i].name);
    bits &= ~(CUSTOS_ROLE_ADMIN | CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT | CUSTOS_ROLE_AUDIT);
    if (bits != 0)
        snprintf(buf + len, len < cap ? cap - len : 0, "%s0x%lx", len ? "," : "", bits);
    else if (len == 0)
        snprintf(buf, cap, "-");
}

/* custos.h: 1..63 bytes, no ',' (lists of allowed users), not starting with '*' (reserved). */
static int check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63 || strchr(name, ',') != NULL || name[0] == '*') {
        cli_err("bad user name '%s': 1 to 63 bytes, no ',' and not starting with '*'", name);
        return -1;
    }
    return 0;
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* The first row whose steps include the failing step says what the code means there. */
static const struct {
    unsigned steps;
    CK_RV rv;
    const char *why;
} ERRORS[] = {
    { S_LOGIN, CKR_PIN_INCORRECT, "the PIN is wrong or is not an admin's" },
    { S_LOGIN, CKR_PIN_LOCKED, "the admin is locked out (too many wrong PINs) or disabled" },
    { S_LOGIN, CKR_PIN_LEN_RANGE, "the PIN's length is outside the token's range" },
    { S_LOGIN, CKR_USER_TYPE_INVALID, "the module does not know the security officer user type" },
    { S_ADD, CKR_ACTION_PROHIBITED, "a user of that name exists already" },
    { S_ADD, CKR_ARGUMENTS_BAD, "the token does not accept this name or these roles" },
    { S_ADD | S_PASSWD, CKR_PIN_INVALID, "the PIN is already another user's" },
    { S_ADD | S_PASSWD, CKR_PIN_LEN_RANGE, "the new PIN's length is outside the token's range" },
    { S_REMOVE, CKR_ACTION_PROHIBITED, "an admin cannot remove themself" },
    { S_DISABLE | S_ENABLE, CKR_ACTION_PROHIBITED, "an admin cannot disable or enable themself" },
    { S_ROLES, CKR_ACTION_PROHIBITED,
      "roles cannot cross between admin and non-admin; remove the user and add it again" },
    { S_REMOVE | S_PASSWD | S_ROLES | S_DISABLE | S_ENABLE, CKR_ARGUMENTS_BAD, "no such user" },
    { S_ANY, CKR_USER_NOT_LOGGED_IN, "no admin is logged in" },
    { S_ANY, CKR_SESSION_READ_ONLY, "the session is read-only" },
    { S_ANY, CKR_TOKEN_WRITE_PROTECTED, "the token is write-protected" },
    { S_ANY, CKR_TOKEN_NOT_RECOGNIZED, "the token is not initialised" },
    { S_ANY, CKR_CUSTOS_AUDIT_FAILED, "the audit record could not be written, so the token refused" },
    { S_ANY, CKR_DEVICE_ERROR, "the token's store failed" },
    { S_ANY, CKR_HOST_MEMORY, "out of memory" },
};

static const char *rv_name(CK_RV rv)
{
    return rv == CKR_CUSTOS_AUDIT_FAILED ? "CKR_CUSTOS_AUDIT_FAILED" : cli_rv_name(rv);
}

/* One line: "custos user: add bob: a user of that name exists already (CKR_ACTION_PROHIBITED)". */
static int refused(unsigned step, const char *what, CK_RV rv)
{
    const char *why = "the token refused";
    for (size_t i = 0; i < NELEM(ERRORS); i++)
        if ((ERRORS[i].steps & step) && ERRORS[i].rv == rv) {
            why = ERRORS[i].why;
            break;
        }
    cli_err("%s: %s (%s)", what, why, rv_name(rv));
    return 1;
}

/* ---- the module and the token ---------------------------------------------------------------- */


/* --slot N, --token LABEL, or the only initialised token. */
static CK_RV pick_token(ctx *c, const opts *o, CK_SLOT_ID *slot)
{
    CK_FUNCTION_LIST_PTR f = c->m.f;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, found = 0;
    CK_RV rv;

    if (o->slot >= 0) {
        CK_TOKEN_INFO ti;
        *slot = (CK_SLOT_ID)o->slot;
        rv = f->C_GetTokenInfo(*slot, &ti);
        if (rv == CKR_OK && !(ti.flags & CKF_TOKEN_INITIALIZED))
            rv = CKR_TOKEN_NOT_RECOGNIZED;
        if (rv != CKR_OK)
            cli_err("slot %ld: no initialised token (%s)", o->slot, rv_name(rv));
        return rv;
    }
    if (o->label != NULL) {
        rv = cli_find_token(f, o->label, slot);
        if (rv != CKR_OK)
            cli_err("no initialised token labelled '%s' (%s)", o->label, rv_name(rv));
        return rv;
    }
    rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv == CKR_OK) {
        slots = calloc(n + 1, sizeof(*slots));
        rv = slots == NULL ? CKR_HOST_MEMORY : f->C_GetSlotList(CK_TRUE, slots, &n);
    }
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED)) {
            if (found++ == 0)
                *slot = slots[i];
        }
    }
    free(slots);
    if (rv != CKR_OK) {
        cli_err("cannot list the slots (%s)", rv_name(rv));
        return rv;
    }
    if (found == 1)
        return CKR_OK;
    if (found == 0)
        cli_err("no initialised token (initialise one first, e.g. pkcs11-tool --init-token)");
    else
        cli_err("%lu initialised tokens: choose one with --token LABEL or --slot N",
                (unsigned long)found);
    return CKR_TOKEN_NOT_PRESENT;
}

/* PKCS#11 3.0 sec. 5.4: the vendor interface comes from C_GetInterface by name and version. */
static int vendor_functions(ctx *c)
{
    CK_INTERFACE_PTR itf = NULL;
    CK_VERSION want = { 1, 0 };
    CK_RV rv = CKR_FUNCTION_NOT_SUPPORTED;

    *(void **)&c->get_itf = dlsym(c->m.lib, "C_GetInterface");
    if (c->get_itf != NULL)
        rv = c->get_itf((CK_UTF8CHAR_PTR)CUSTOS_INTERFACE_NAME, &want, &itf, 0);
    if (rv != CKR_OK || itf == NULL || itf->pFunctionList == NULL) {
        cli_err("%s has no \"%s\" 1.0 interface: is it the Custos module? (%s)", c->m.path,
                CUSTOS_INTERFACE_NAME, rv_name(rv));
        return -1;
    }
    c->v = itf->pFunctionList;
    return 0;
}

static int admin_login(ctx *c, const opts *o)
{
    char pin[CLI_PIN_MAX], err[256], prompt[128];
    CK_RV rv;

    if (o->admin != NULL)
        snprintf(prompt, sizeof(prompt), "PIN of admin %s: ", o->admin);
    else
        snprintf(prompt, sizeof(prompt), "Admin (security officer) PIN: ");
    if (cli_read_pin(o->pin_file, prompt, pin, sizeof(pin), err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return -1;
    }
    if (o->admin == NULL) {
        rv = c->m.f->C_Login(c->sh, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    } else {
        /* C_LoginUser is in the 3.0 list only (PKCS#11 3.0 sec. 5.6). */
        CK_INTERFACE_PTR itf = NULL;
        CK_VERSION v30 = { 3, 0 };
        rv = c->get_itf((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &itf, 0);
        if (rv == CKR_OK && (itf == NULL || itf->pFunctionList == NULL))
            rv = CKR_FUNCTION_NOT_SUPPORTED;
        if (rv == CKR_OK) {
            CK_FUNCTION_LIST_3_0_PTR f3 = itf->pFunctionList;
            rv = f3->C_LoginUser(c->sh, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin),
                                 (CK_UTF8CHAR_PTR)o->admin, strlen(o->admin));
        }
    }
    cli_wipe(pin, sizeof(pin));
    if (rv != CKR_OK) {
        char what[128];
        snprintf(what, sizeof(what), "admin login%s%s", o->admin ? " as " : "",
                 o->admin ? o->admin : "");
        refused(S_LOGIN, what, rv);
        return -1;
    }
    c->logged_in = true;
    return 0;
}

/* The new PIN: --new-pin-file, or asked twice on the terminal. pin holds CLI_PIN_MAX bytes. */
static int new_pin(const opts *o, char *pin)
{
    char again[CLI_PIN_MAX], err[256], prompt[128];
    int rc = -1;

    snprintf(prompt, sizeof(prompt), "New PIN for %s: ", o->name);
    if (cli_read_pin(o->new_pin_file, prompt, pin, CLI_PIN_MAX, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        goto out;
    }
    if (o->new_pin_file == NULL) {
        snprintf(prompt, sizeof(prompt), "New PIN for %s, again: ", o->name);
        if (cli_read_pin(NULL, prompt, again, sizeof(again), err, sizeof(err)) != 0) {
            cli_err("%s", err);
            goto out;
        }
        if (strcmp(pin, again) != 0) {
            cli_err("the two PINs differ; nothing was changed");
            goto out;
        }
    }
    rc = 0;
out:
    cli_wipe(again, sizeof(again));
    if (rc != 0)
        cli_wipe(pin, CLI_PIN_MAX);
    return rc;
}

/* ---- the actions ----------------------------------------------------------------------------- */

#define NAME_ARGS(o) (CK_UTF8CHAR_PTR)(o)->name, (CK_ULONG)strlen((o)->name)

static int what_failed(unsigned step, const char *action, const opts *o, CK_RV rv)
{
    char what[128];
    snprintf(what, sizeof(what), "%s %s", action, o->name);
    return refused(step, what, rv);
}

static int do_add(ctx *c, const opts *o)
{
    char pin[CLI_PIN_MAX], roles[64];
    if (new_pin(o, pin) != 0)
        return 1;
    CK_RV rv = c->v->C_CustosUserAdd(c->sh, NAME_ARGS(o), o->roles, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    cli_wipe(pin, sizeof(pin));
    if (rv != CKR_OK)
        return what_failed(S_ADD, "add", o, rv);
    roles_text(o->roles, roles, sizeof(roles));
    printf("added user %s with roles %s\n", o->name, roles);
    return 0;
}

static int do_remove(ctx *c, const opts *o)
{
    CK_RV rv = c->v->C_CustosUserRemove(c->sh, NAME_ARGS(o));
    if (rv != CKR_OK)
        return what_failed(S_REMOVE, "remove", o, rv);
    printf("removed user %s\n", o->name);
    return 0;
}

static int do_passwd(ctx *c, const opts *o)
{
    char pin[CLI_PIN_MAX];
    if (new_pin(o, pin) != 0)
        return 1;
    CK_RV rv = c->v->C_CustosUserSetPIN(c->sh, NAME_ARGS(o), (CK_UTF8CHAR_PTR)pin, strlen(pin));
    cli_wipe(pin, sizeof(pin));
    if (rv != CKR_OK)
        return what_failed(S_PASSWD, "passwd", o, rv);
    printf("set a new PIN for %s (any lockout is lifted)\n", o->name);
    return 0;
}

static int do_roles(ctx *c, const opts *o)
{
    char roles[64];
    CK_RV rv = c->v->C_CustosUserSetRoles(c->sh, NAME_ARGS(o), o->roles);
    if (rv != CKR_OK)
        return what_failed(S_ROLES, "roles", o, rv);
    roles_text(o->roles, roles, sizeof(roles));
    printf("%s now has roles %s\n", o->name, roles);
    return 0;
}

static int do_enable(ctx *c, const opts *o, bool on)
{
    CK_RV rv = c->v->C_CustosUserEnable(c->sh, NAME_ARGS(o), on ? CK_TRUE : CK_FALSE);
    if (rv != CKR_OK)
        return what_failed(on ? S_ENABLE : S_DISABLE, on ? "enable" : "disable", o, rv);
    printf(on ? "enabled %s: it may log in again with its PIN\n"
              : "disabled %s: it cannot log in until enabled again\n",
           o->name);
    return 0;
}

static int do_disable_user(ctx *c, const opts *o) { return do_enable(c, o, false); }
static int do_enable_user(ctx *c, const opts *o) { return do_enable(c, o, true); }

static const char *state_of(CK_FLAGS flags)
{
    if (flags & CKF_CUSTOS_USER_DISABLED)
        return "disabled";
    return (flags & CKF_CUSTOS_USER_LOCKED) ? "locked" : "enabled";
}

/* A name as a JSON string: names are UTF-8 and may hold '"', '\\' or control bytes. */
static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_json(const CK_CUSTOS_USER_INFO *u)
{
    bool first = true;
    printf("{\"name\":");
    json_string((const char *)u->name);
    printf(",\"roles\":[");
    for (size_t r = 0; r < NELEM(ROLES); r++)
        if (u->roles & ROLES[r].bit) {
            printf("%s\"%s\"", first ? "" : ",", ROLES[r].name);
            first = false;
        }
    printf("],\"state\":\"%s\",\"disabled\":%s,\"locked\":%s,\"failures\":%lu}\n",
           state_of(u->flags), (u->flags & CKF_CUSTOS_USER_DISABLED) ? "true" : "false",
           (u->flags & CKF_CUSTOS_USER_LOCKED) ? "true" : "false", (unsigned long)u->failures);
}

static int do_list(ctx *c, const opts *o)
{
    CK_CUSTOS_USER_INFO *list = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int width = 4;
    char roles[64];

    /* The two-call rule (PKCS#11 3.2 sec. 5.2); a user added in between means one more round. */
    do {
        free(list);
        list = NULL;
        rv = c->v->C_CustosUserList(c->sh, NULL, &n);
        if (rv != CKR_OK)
            break;
        list = calloc(n + 1, sizeof(*list));
        if (list == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        rv = c->v->C_CustosUserList(c->sh, list, &n);
    } while (rv == CKR_BUFFER_TOO_SMALL);
    if (rv != CKR_OK) {
        free(list);
        return refused(S_LIST, "list", rv);
    }
    for (CK_ULONG i = 0; i < n; i++) {
        list[i].name[sizeof(list[i].name) - 1] = '\0';
        int len = (int)strlen((const char *)list[i].name);
        if (len > width)
            width = len;
    }
    if (!o->json)
        printf("%-*s  %-24s  %-8s  %s\n", width, "NAME", "ROLES", "STATE", "FAILURES");
    for (CK_ULONG i = 0; i < n; i++) {
        if (o->json) {
            print_json(&list[i]);
            continue;
        }
        roles_text(list[i].roles, roles, sizeof(roles));
        printf("%-*s  %-24s  %-8s  %lu\n", width, (const char *)list[i].name, roles,
               state_of(list[i].flags), (unsigned long)list[i].failures);
    }
    free(list);
    return 0;
}

enum { NO_NAME, NEEDS_NAME };
enum { NO_ROLES, NEEDS_ROLES };

static const struct {
    const char *name;
    action_fn run;
    int name_arg;
    int roles_arg;
    bool new_pin;      /* takes --new-pin-file */
} ACTIONS[] = {
    { "add", do_add, NEEDS_NAME, NEEDS_ROLES, true },
    { "remove", do_remove, NEEDS_NAME, NO_ROLES, false },
    { "passwd", do_passwd, NEEDS_NAME, NO_ROLES, true },
    { "roles", do_roles, NEEDS_NAME, NEEDS_ROLES, false },
    { "list", do_list, NO_NAME, NO_ROLES, false },
    { "disable", do_disable_user, NEEDS_NAME, NO_ROLES, false },
    { "enable", do_enable_user, NEEDS_NAME, NO_ROLES, false },
};

/* ---- main ------------------------------------------------------------------------------------ */

/* Options may come before or after the action and the name (GNU getopt permutes argv). */
static int parse(int argc, char **argv, size_t *act, opts *o)
{
    static const struct option LONGOPTS[] = {
        { "module", required_argument, NULL, 'm' },   { "token", required_argument, NULL, 't' },
        { "slot", required_argument, NULL, 's' },     { "admin", required_argument, NULL, 'a' },
        { "pin-file", required_argument, NULL, 'p' }, { "new-pin-file", required_argument, NULL, 'n' },
        { "roles", required_argument, NULL, 'r' },    { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    int ch;

    memset(o, 0, sizeof(*o));
    o->slot = -1;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", LONGOPTS, NULL)) != -1) {
        switch (ch) {
        case 'm': o->module = optarg; break;
        case 't': o->label = optarg; break;
        case 'a': o->admin = optarg; break;
        case 'p': o->pin_file = optarg; break;
        case 'n': o->new_pin_file = optarg; break;
        case 'r': o->roles_arg = optarg; break;
        case 'j': o->json = true; break;
        case 's':
            if (cli_parse_ulong(optarg, 0, ULONG_MAX - 1, &v) != 0 || v > (unsigned long)LONG_MAX) {
                cli_err("--slot: not a slot number: %s", optarg);
                return -1;
            }
            o->slot = (long)v;
            break;
        default: return -1;
        }
    }
    if (optind >= argc) {
        fputs(user_usage, stderr);
        return -1;
    }
    for (*act = 0; *act < NELEM(ACTIONS); (*act)++)
        if (strcmp(argv[optind], ACTIONS[*act].name) == 0)
            break;
    if (*act == NELEM(ACTIONS)) {
        cli_err("unknown action '%s' (add, remove, passwd, roles, list, disable, enable)", argv[optind]);
        return -1;
    }
    const size_t i = *act;
    const char *a = ACTIONS[i].name;
    optind++;
    if (ACTIONS[i].name_arg == NEEDS_NAME) {
        if (optind >= argc) {
            cli_err("%s: give the user's NAME (see custos user --help)", a);
            return -1;
        }
        o->name = argv[optind++];
        if (check_name(o->name) != 0)
            return -1;
    }
    if (optind != argc) {
        cli_err("%s: unexpected argument '%s' (see custos user --help)", a, argv[optind]);
        return -1;
    }
    if (o->label != NULL && o->slot >= 0) {
        cli_err("give --token or --slot, not both");
        return -1;
    }
    if (ACTIONS[i].roles_arg == NEEDS_ROLES && o->roles_arg == NULL) {
        cli_err("%s: give --roles, e.g. --roles generate,decrypt", a);
        return -1;
    }
    if (ACTIONS[i].roles_arg == NO_ROLES && o->roles_arg != NULL) {
        cli_err("%s takes no --roles", a);
        return -1;
    }
    if (o->roles_arg != NULL && parse_roles(o->roles_arg, &o->roles) != 0)
        return -1;
    if (!ACTIONS[i].new_pin && o->new_pin_file != NULL) {
        cli_err("%s takes no --new-pin-file", a);
        return -1;
    }
    if (o->json && ACTIONS[i].run != do_list) {
        cli_err("%s takes no --json", a);
        return -1;
    }
    return 0;
}

int user_main(int argc, char **argv)
{
    ctx c;
    opts o;
    char err[512], path[PATH_MAX];
    CK_SLOT_ID slot = 0;
    size_t act;
    int status = 1;
    CK_RV rv;

    memset(&c, 0, sizeof(c));
    if (parse(argc, argv, &act, &o) != 0)
        return 2;
    if (o.module == NULL) {
        if (cli_default_module(path, sizeof(path)) != 0) {
            cli_err("no Custos module found: give --module PATH (or set CUSTOS_MODULE)");
            return 2;
        }
        o.module = path;
    }
    if (cli_module_load(&c.m, o.module, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return 1;
    }
    rv = cli_module_init(&c.m, NULL);
    if (rv != CKR_OK) {
        cli_err("C_Initialize failed (%s)", rv_name(rv));
        goto out;
    }
    if (vendor_functions(&c) != 0 || pick_token(&c, &o, &slot) != CKR_OK)
        goto out;
    /* R/W: every change needs it, and an R/O session would block the SO login (sec. 5.6). */
    rv = c.m.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c.sh);
    if (rv != CKR_OK) {
        refused(S_ANY, "open session", rv);
        goto out;
    }
    c.session = true;
    if (admin_login(&c, &o) != 0)
        goto out;
    status = ACTIONS[act].run(&c, &o);
out:
    if (c.logged_in)
        (void)c.m.f->C_Logout(c.sh);
    if (c.session)
        (void)c.m.f->C_CloseSession(c.sh);
    cli_module_unload(&c.m);
    return status;
}
