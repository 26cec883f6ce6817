/* cmd_key.c -- `custos key create|rotate|list|suspend|resume` (docs/key-families.md): the key-family
 * lifecycle of a Custos token, as an admin (C_Login(CKU_SO) or C_LoginUser(CKU_SO, name)), through
 * standard calls (C_GenerateKey, C_FindObjects, C_GetAttributeValue, C_SetAttributeValue) and the
 * "Vendor Custos" rotation functions. The token enforces and audits every change. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "custos.h"

/* docs/key-families.md: a family name is 1..48 bytes, no ':' (CKA_ID is family:vN) and no ','. */
#define FAMILY_MAX 48
#define FIND_BATCH 64

const char key_usage[] =
    "Usage: custos key ACTION [ARGS] [OPTIONS]\n"
    "\n"
    "The key families of a Custos token (docs/key-families.md), as an admin. A family is one KEK\n"
    "(per tenant or dataset) kept as versions 1, 2, 3...: rotation adds a version; older ones\n"
    "stay for decrypting and unwrapping (custos rewrap moves envelopes to the newest).\n"
    "\n"
    "Actions:\n"
    "  create FAMILY        make version 1: a token key, never extractable, for wrap, unwrap,\n"
    "                       encrypt and decrypt\n"
    "      --period P       rotate by itself after P: 90d, 12h, 30m, 2w or seconds (0: only when\n"
    "                       asked; the default)\n"
    "      --users a,b      only these users may see and use the family (default: every user)\n"
    "      --type T         aes (AES-256, the default; what the envelope commands need) or chacha20\n"
    "  rotate FAMILY        add a version now: \"FAMILY: now version N\"\n"
    "  rotate --due         rotate every family whose period has passed (for cron or a systemd\n"
    "                       timer): \"FAMILY: now version N\" for each, then how many\n"
    "  list                 every version of every family: state, created and rotated times (UTC),\n"
    "                       rotation period, encryptions so far, allowed users\n"
    "      --json           one JSON object per family and line\n"
    "  suspend FAMILY[:vN]  no use at all of the family (every version) or of version N\n"
    "  resume FAMILY[:vN]   undo suspend: the newest version becomes active again, older ones\n"
    "                       decrypt-only\n"
    "\n"
    "Options:\n"
    "  --module PATH        the Custos module (default: $CUSTOS_MODULE, else the one next to this\n"
    "                       program)\n"
    "  --token T            the token: its label or a pkcs11: URI such as 'pkcs11:token=demo'\n"
    "                       (default: the only initialised one)\n"
    "  --slot N             the token in slot N\n"
    "  --admin NAME         log in as this admin (C_LoginUser); default: the admin whose PIN it is\n"
    "  --pin-file FILE      the admin PIN, from the first line of FILE (default: ask on the\n"
    "                       terminal); never on the command line\n"
    "\n"
    "Exit status: 0 done, 1 the token refused or failed (one line says why), 2 usage error.\n";

typedef struct kopts {
    const char *action;
    const char *family;      /* the FAMILY argument, without :vN */
    unsigned long version;   /* from FAMILY:vN; 0: every version */
    unsigned long period;
    bool has_period;
    const char *users;
    bool chacha;
    bool due;
    bool json;
} kopts;

/* One version of a family, as the token reports it. */
typedef struct kver {
    char family[FAMILY_MAX + 1];
    CK_OBJECT_HANDLE h;
    CK_ULONG version, state, created, rotated, period, count, key_type;
    bool has_rotated, has_period, has_count;
    char users[256];
} kver;

typedef struct kctx {
    cli_token t;
    cli_token_opts o;
} kctx;

/* ---- names and numbers ---------------------------------------------------------------------------- */

static const struct {
    CK_ULONG state;
    const char *name;
} STATES[] = {
    { CUSTOS_STATE_ACTIVE, "active" },
    { CUSTOS_STATE_DECRYPT_ONLY, "decrypt-only" },
    { CUSTOS_STATE_SUSPENDED, "suspended" },
    { CUSTOS_STATE_PENDING_DESTRUCTION, "pending-destruction" },
};

static const char *state_name(CK_ULONG s)
{
    for (size_t i = 0; i < NELEM(STATES); i++)
        if (STATES[i].state == s)
            return STATES[i].name;
    return "unknown";
}

static const struct {
    char unit;
    unsigned long seconds;
} UNITS[] = {
    { 'w', 604800UL }, { 'd', 86400UL }, { 'h', 3600UL }, { 'm', 60UL }, { 's', 1UL },
};

/* "90d", "12h", "30m", "2w", "45s" or plain seconds. */
static int parse_period(const char *s, unsigned long *out)
{
    char num[32];
    size_t n = strlen(s);
    unsigned long mult = 1, v;
    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, s, n + 1);
    for (size_t i = 0; i < NELEM(UNITS); i++)
        if (num[n - 1] == UNITS[i].unit) {
            mult = UNITS[i].seconds;
            num[--n] = '\0';
            break;
        }
    if (cli_parse_ulong(num, 0, ULONG_MAX / mult, &v) != 0)
        return -1;
    *out = v * mult;
    return 0;
}

static void period_text(CK_ULONG p, char *buf, size_t cap)
{
    if (p == 0) {
        snprintf(buf, cap, "manual");
        return;
    }
    for (size_t i = 0; i < NELEM(UNITS); i++)
        if (p % UNITS[i].seconds == 0) {
            snprintf(buf, cap, "%lu%c", (unsigned long)(p / UNITS[i].seconds), UNITS[i].unit);
            return;
        }
}

static void time_text(CK_ULONG t, char *buf, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, cap, "%lu", (unsigned long)t);
}

static bool family_ok(const char *f)
{
    size_t n = strlen(f);
    return n > 0 && n <= FAMILY_MAX && strchr(f, ':') == NULL && strchr(f, ',') == NULL;
}

/* "tenant42" or "tenant42:v3". */
static int parse_family(const char *arg, bool versions, kopts *k)
{
    static char fam[FAMILY_MAX + 1];
    const char *colon = strchr(arg, ':');
    size_t n = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
    if (n > FAMILY_MAX)
        n = FAMILY_MAX + 1; /* rejected below */
    snprintf(fam, sizeof(fam), "%.*s", (int)(n > FAMILY_MAX ? FAMILY_MAX : n), arg);
    if (n > FAMILY_MAX || !family_ok(fam)) {
        cli_err("bad family name: 1 to %d bytes, no ':' and no ','", FAMILY_MAX);
        return -1;
    }
    k->family = fam;
    k->version = 0;
    if (colon == NULL)
        return 0;
    if (!versions || colon[1] != 'v' || cli_parse_ulong(colon + 2, 1, ULONG_MAX, &k->version) != 0) {
        cli_err(versions ? "'%s': give FAMILY or FAMILY:vN (N = 1, 2, ...)"
                         : "'%s': a family name has no ':'",
                arg);
        return -1;
    }
    return 0;
}

/* ---- errors --------------------------------------------------------------------------------------- */

enum { K_CREATE = 1, K_ROTATE, K_STATE, K_LIST };

static const struct {
    int step;
    CK_RV rv;
    const char *why;
} KERRORS[] = {
    { K_CREATE, CKR_ACTION_PROHIBITED, "a family of that name exists already" },
    { K_CREATE, CKR_ATTRIBUTE_VALUE_INVALID, "the token refused the name, period or users" },
    { K_CREATE, CKR_TEMPLATE_INCONSISTENT, "the token refused the key's attributes" },
    { K_CREATE, CKR_MECHANISM_INVALID, "the token cannot make keys of this type" },
    { K_ROTATE, CKR_ARGUMENTS_BAD,
      "no such family with an active version (unknown, or its newest version is suspended)" },
    { K_ROTATE, CKR_ACTION_PROHIBITED, "only an admin may rotate" },
    { K_STATE, CKR_ACTION_PROHIBITED, "only an admin may change a key's state" },
    { K_STATE, CKR_ATTRIBUTE_READ_ONLY, "the token does not let this state change" },
};

static int refused(int step, const char *what, CK_RV rv)
{
    const char *why = NULL;
    for (size_t i = 0; i < NELEM(KERRORS); i++)
        if (KERRORS[i].step == step && KERRORS[i].rv == rv) {
            why = KERRORS[i].why;
            break;
        }
    if (why == NULL)
        why = cli_token_why(rv);
    if (why == NULL)
        why = "the token refused";
    cli_err("%s: %s (%s)", what,  why,
            rv == CKR_CUSTOS_AUDIT_FAILED ? "CKR_CUSTOS_AUDIT_FAILED" : cli_rv_name(rv));
    return 1;
}

/* ---- reading the families -------------------------------------------------------------------------- */

static bool get_ulong(kctx *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
    CK_ATTRIBUTE a = { type, v, sizeof(*v) };
    return c->t.m.f->C_GetAttributeValue(c->t.sh, h, &a, 1) == CKR_OK &&
           a.ulValueLen == sizeof(*v);
}

/* A text attribute into buf (NUL-terminated); false if absent, unreadable or too long. */
static bool get_text(kctx *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, char *buf, size_t cap)
{
    CK_ATTRIBUTE a = { type, NULL, 0 };
    CK_FUNCTION_LIST_PTR f = c->t.m.f;
    if (f->C_GetAttributeValue(c->t.sh, h, &a, 1) != CKR_OK ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen >= cap)
        return false;
    a.pValue = buf;
    if (f->C_GetAttributeValue(c->t.sh, h, &a, 1) != CKR_OK)
        return false;
    buf[a.ulValueLen] = '\0';
    return true;
}

static int by_family_version(const void *a, const void *b)
{
    const kver *x = a, *y = b;
    int r = strcmp(x->family, y->family);
    if (r != 0)
        return r;
    return x->version < y->version ? -1 : x->version > y->version;
}

/* Every secret key with CKA_CUSTOS_FAMILY (all of them, or one family), sorted. */
static int collect(kctx *c, const char *only, kver **out, size_t *count)
{
    static CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_FUNCTION_LIST_PTR f = c->t.m.f;
    CK_ATTRIBUTE q[2] = {
        { CKA_CLASS, &secret, sizeof(secret) },
        { CKA_CUSTOS_FAMILY, (void *)only, only != NULL ? (CK_ULONG)strlen(only) : 0 },
    };
    CK_OBJECT_HANDLE hs[FIND_BATCH];
    CK_OBJECT_HANDLE *all = NULL;
    size_t n = 0;
    kver *v = NULL;
    CK_ULONG got;

    CK_RV rv = f->C_FindObjectsInit(c->t.sh, q, only != NULL ? 2 : 1);
    while (rv == CKR_OK) {
        rv = f->C_FindObjects(c->t.sh, hs, FIND_BATCH, &got);
        if (rv != CKR_OK || got == 0)
            break;
        CK_OBJECT_HANDLE *p = realloc(all, (n + got) * sizeof(*p));
        if (p == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        all = p;
        memcpy(all + n, hs, got * sizeof(*hs));
        n += got;
    }
    (void)f->C_FindObjectsFinal(c->t.sh);
    if (rv != CKR_OK) {
        free(all);
        return refused(K_LIST, "finding the keys", rv);
    }
    v = calloc(n + 1, sizeof(*v));
    if (v == NULL) {
        free(all);
        cli_err("out of memory");
        return 1;
    }
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        kver *k = &v[*count];
        if (!get_text(c, all[i], CKA_CUSTOS_FAMILY, k->family, sizeof(k->family)) ||
            k->family[0] == '\0' || !get_ulong(c, all[i], CKA_CUSTOS_VERSION, &k->version))
            continue; /* not a family member: a plain key */
        k->h = all[i];
        if (!get_ulong(c, all[i], CKA_CUSTOS_STATE, &k->state))
            k->state = 0;
        if (!get_ulong(c, all[i], CKA_CUSTOS_CREATED, &k->created))
            k->created = 0;
        k->has_rotated = get_ulong(c, all[i], CKA_CUSTOS_ROTATED, &k->rotated);
        k->has_period = get_ulong(c, all[i], CKA_CUSTOS_ROTATION_PERIOD, &k->period);
        k->has_count = get_ulong(c, all[i], CKA_CUSTOS_ENCRYPT_COUNT, &k->count);
        if (!get_ulong(c, all[i], CKA_KEY_TYPE, &k->key_type))
            k->key_type = CK_UNAVAILABLE_INFORMATION;
        if (!get_text(c, all[i], CKA_CUSTOS_ALLOWED_USERS, k->users, sizeof(k->users)))
            k->users[0] = '\0';
        (*count)++;
    }
    free(all);
    qsort(v, *count, sizeof(*v), by_family_version);
    *out = v;
    return 0;
}

static const char *type_name(CK_ULONG t)
{
    return t == CKK_AES ? "aes" : t == CKK_CHACHA20 ? "chacha20" : "other";
}

/* ---- the actions ------------------------------------------------------------------------------------- */

static int do_create(kctx *c, const kopts *k)
{
    static CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_KEY_TYPE type = k->chacha ? CKK_CHACHA20 : CKK_AES;
    CK_ULONG len = 32, period = k->has_period ? k->period : 0;
    CK_MECHANISM m = { k->chacha ? CKM_CHACHA20_KEY_GEN : CKM_AES_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE h;
    char what[96], ptext[32];
    CK_ATTRIBUTE t[16] = {
        { CKA_CLASS, &secret, sizeof(secret) },
        { CKA_KEY_TYPE, &type, sizeof(type) },
        { CKA_TOKEN, &yes, sizeof(yes) },
        { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
        { CKA_EXTRACTABLE, &no, sizeof(no) },
        { CKA_ENCRYPT, &yes, sizeof(yes) },
        { CKA_DECRYPT, &yes, sizeof(yes) },
        { CKA_WRAP, &yes, sizeof(yes) },
        { CKA_UNWRAP, &yes, sizeof(yes) },
        { CKA_CUSTOS_FAMILY, (void *)k->family, (CK_ULONG)strlen(k->family) },
        { CKA_CUSTOS_ROTATION_PERIOD, &period, sizeof(period) },
    };
    CK_ULONG n = 12;
    /* PKCS#11 3.2 sec. 6.7 (AES): the caller gives the length; a ChaCha20 key is always 256 bits. */
    if (!k->chacha)
        t[n++] = (CK_ATTRIBUTE){ CKA_VALUE_LEN, &len, sizeof(len) };
    if (k->users != NULL)
        t[n++] = (CK_ATTRIBUTE){ CKA_CUSTOS_ALLOWED_USERS, (void *)k->users,
                                 (CK_ULONG)strlen(k->users) };
    CK_RV rv = c->t.m.f->C_GenerateKey(c->t.sh, &m, t, n, &h);
    snprintf(what, sizeof(what), "create %s", k->family);
    if (rv != CKR_OK)
        return refused(K_CREATE, what, rv);
    period_text(period, ptext, sizeof(ptext));
    printf("created %s: version 1, %s-256, rotation %s%s, users %s\n", k->family,
           k->chacha ? "chacha20" : "aes", period == 0 ? "only when asked" : "every ",
           period == 0 ? "" : ptext, k->users != NULL ? k->users : "all");
    return 0;
}

static int do_rotate_due(kctx *c)
{
    kver *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    CK_ULONG rotated = 0;
    int status = 1;

    if (collect(c, NULL, &before, &nb) != 0)
        return 1;
    CK_RV rv = c->t.vendor->C_CustosKeyRotateDue(c->t.sh, &rotated);
    if (rv != CKR_OK) {
        refused(K_ROTATE, "rotate --due", rv);
        goto out;
    }
    if (collect(c, NULL, &after, &na) != 0)
        goto out;
    /* A family was rotated if its newest version is newer than before. */
    for (size_t i = 0; i < na; i++) {
        if (i + 1 < na && strcmp(after[i].family, after[i + 1].family) == 0)
            continue;
        CK_ULONG old = 0;
        for (size_t j = 0; j < nb; j++)
            if (strcmp(before[j].family, after[i].family) == 0 && before[j].version > old)
                old = before[j].version;
        if (after[i].version > old && old != 0)
            printf("%s: now version %lu\n", after[i].family, (unsigned long)after[i].version);
    }
    printf("%lu famil%s rotated\n", (unsigned long)rotated, rotated == 1 ? "y" : "ies");
    status = 0;
out:
    free(before);
    free(after);
    return status;
}

static int do_rotate(kctx *c, const kopts *k)
{
    CK_ULONG v = 0;
    char what[96];
    if (k->due)
        return do_rotate_due(c);
    CK_RV rv = c->t.vendor->C_CustosKeyRotate(c->t.sh, (CK_UTF8CHAR_PTR)k->family,
                                              (CK_ULONG)strlen(k->family), &v);
    snprintf(what, sizeof(what), "rotate %s", k->family);
    if (rv != CKR_OK)
        return refused(K_ROTATE, what, rv);
    printf("%s: now version %lu\n", k->family, (unsigned long)v);
    return 0;
}

static void list_json(const kver *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool first = i == 0 || strcmp(v[i - 1].family, v[i].family) != 0;
        bool last = i + 1 == n || strcmp(v[i + 1].family, v[i].family) != 0;
        char created[32], rotated[32];
        if (first) {
            /* The newest version carries the family's policy. */
            size_t top = i;
            while (top + 1 < n && strcmp(v[top + 1].family, v[i].family) == 0)
                top++;
            printf("{\"family\":");
            cli_json_string(stdout, v[i].family);
            printf(",\"current_version\":%lu,\"rotation_period\":%lu,\"allowed_users\":",
                   (unsigned long)v[top].version,
                   (unsigned long)(v[top].has_period ? v[top].period : 0));
            if (v[top].users[0] != '\0')
                cli_json_string(stdout, v[top].users);
            else
                printf("null");
            printf(",\"versions\":[");
        }
        time_text(v[i].created, created, sizeof(created));
        printf("%s{\"version\":%lu,\"id\":", first ? "" : ",", (unsigned long)v[i].version);
        char id[96];
        snprintf(id, sizeof(id), "%s:v%lu", v[i].family, (unsigned long)v[i].version);
        cli_json_string(stdout, id);
        printf(",\"state\":\"%s\",\"type\":\"%s\",\"created\":\"%s\",\"rotated\":",
               state_name(v[i].state), type_name(v[i].key_type), created);
        if (v[i].has_rotated) {
            time_text(v[i].rotated, rotated, sizeof(rotated));
            printf("\"%s\"", rotated);
        } else {
            printf("null");
        }
        printf(",\"encrypt_count\":");
        if (v[i].has_count)
            printf("%lu}", (unsigned long)v[i].count);
        else
            printf("null}");
        if (last)
            printf("]}\n");
    }
}

static int do_list(kctx *c, const kopts *k)
{
    kver *v = NULL;
    size_t n = 0;
    int width = 6;
    if (collect(c, NULL, &v, &n) != 0)
        return 1;
    if (k->json) {
        list_json(v, n);
        free(v);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(v[i].family) > width)
            width = (int)strlen(v[i].family);
    printf("%-*s  %-7s  %-19s  %-8s  %-20s  %-20s  %-7s  %-11s  %s\n", width, "FAMILY", "VERSION",
           "STATE", "TYPE", "CREATED", "ROTATED", "PERIOD", "ENCRYPTIONS", "USERS");
    for (size_t i = 0; i < n; i++) {
        char created[32], rotated[32] = "-", period[32] = "-", count[32] = "-";
        time_text(v[i].created, created, sizeof(created));
        if (v[i].has_rotated)
            time_text(v[i].rotated, rotated, sizeof(rotated));
        if (v[i].has_period)
            period_text(v[i].period, period, sizeof(period));
        if (v[i].has_count)
            snprintf(count, sizeof(count), "%lu", (unsigned long)v[i].count);
        printf("%-*s  %-7lu  %-19s  %-8s  %-20s  %-20s  %-7s  %-11s  %s\n", width, v[i].family,
               (unsigned long)v[i].version, state_name(v[i].state), type_name(v[i].key_type),
               created, rotated, period, count, v[i].users[0] != '\0' ? v[i].users : "all");
    }
    if (n == 0)
        fprintf(stderr, "no key families on this token (custos key create FAMILY makes one)\n");
    free(v);
    return 0;
}

static int set_state(kctx *c, const kver *v, CK_ULONG state)
{
    char what[96];
    CK_ATTRIBUTE a = { CKA_CUSTOS_STATE, &state, sizeof(state) };
    snprintf(what, sizeof(what), "%s:v%lu", v->family, (unsigned long)v->version);
    CK_RV rv = c->t.m.f->C_SetAttributeValue(c->t.sh, v->h, &a, 1);
    if (rv != CKR_OK)
        return refused(K_STATE, what, rv);
    printf("%s: %s\n", what, state_name(state));
    return 0;
}

static int change_state(kctx *c, const kopts *k, bool suspend)
{
    kver *v = NULL;
    size_t n = 0;
    int status = 0, matched = 0;
    if (collect(c, k->family, &v, &n) != 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (k->version != 0 && v[i].version != k->version)
            continue;
        matched++;
        if (suspend) {
            /* Pending destruction is further along than suspended: leave it. */
            if (v[i].state == CUSTOS_STATE_SUSPENDED || v[i].state == CUSTOS_STATE_PENDING_DESTRUCTION)
                printf("%s:v%lu: already %s\n", v[i].family, (unsigned long)v[i].version,
                       state_name(v[i].state));
            else if (set_state(c, &v[i], CUSTOS_STATE_SUSPENDED) != 0)
                status = 1;
            continue;
        }
        if (v[i].state != CUSTOS_STATE_SUSPENDED) {
            printf("%s:v%lu: not suspended (%s)\n", v[i].family, (unsigned long)v[i].version,
                   state_name(v[i].state));
            continue;
        }
        /* The newest version is the family's current one (docs/key-families.md). */
        CK_ULONG to = i + 1 == n ? CUSTOS_STATE_ACTIVE : CUSTOS_STATE_DECRYPT_ONLY;
        if (set_state(c, &v[i], to) != 0)
            status = 1;
    }
    if (matched == 0) {
        if (k->version != 0)
            cli_err("family %s has no version %lu", k->family, k->version);
        else
            cli_err("no key family '%s' on this token (custos key list shows them)", k->family);
        status = 1;
    }
    free(v);
    return status;
}

static int do_suspend(kctx *c, const kopts *k) { return change_state(c, k, true); }
static int do_resume(kctx *c, const kopts *k) { return change_state(c, k, false); }

/* ---- main --------------------------------------------------------------------------------------------- */

enum { ARG_NONE, ARG_FAMILY, ARG_FAMILY_VERSION };
enum { O_PERIOD = 0x200, O_USERS, O_TYPE, O_DUE, O_JSON };
enum { F_PERIOD = 1u << 0, F_USERS = 1u << 1, F_TYPE = 1u << 2, F_DUE = 1u << 3, F_JSON = 1u << 4 };

static const struct {
    const char *name;
    int (*run)(kctx *c, const kopts *k);
    int arg;
    unsigned flags;  /* the F_* options it takes */
} ACTIONS[] = {
    { "create", do_create, ARG_FAMILY, F_PERIOD | F_USERS | F_TYPE },
    { "rotate", do_rotate, ARG_FAMILY, F_DUE },
    { "list", do_list, ARG_NONE, F_JSON },
    { "suspend", do_suspend, ARG_FAMILY_VERSION, 0 },
    { "resume", do_resume, ARG_FAMILY_VERSION, 0 },
};

static const struct {
    int code;
    unsigned flag;
    const char *name;
} KOPTS[] = {
    { O_PERIOD, F_PERIOD, "--period" }, { O_USERS, F_USERS, "--users" }, { O_TYPE, F_TYPE, "--type" },
    { O_DUE, F_DUE, "--due" },          { O_JSON, F_JSON, "--json" },
};

static int parse(int argc, char **argv, kctx *c, kopts *k, size_t *act)
{
    static const struct option LONGOPTS[] = {
        CLI_TOKEN_LONGOPTS,
        { "admin", required_argument, NULL, CLI_OPT_USER },
        { "period", required_argument, NULL, O_PERIOD },
        { "users", required_argument, NULL, O_USERS },
        { "type", required_argument, NULL, O_TYPE },
        { "due", no_argument, NULL, O_DUE },
        { "json", no_argument, NULL, O_JSON },
        { NULL, 0, NULL, 0 },
    };
    unsigned given = 0;
    int ch;

    memset(c, 0, sizeof(*c));
    memset(k, 0, sizeof(*k));
    c->o.slot = -1;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", LONGOPTS, NULL)) != -1) {
        switch (ch) {
        case O_PERIOD:
            if (parse_period(optarg, &k->period) != 0) {
                cli_err("--period: not a period: %s (e.g. 90d, 12h, 30m, 2w or seconds)", optarg);
                return -1;
            }
            k->has_period = true;
            given |= F_PERIOD;
            break;
        case O_USERS:
            if (*optarg == '\0' || optarg[0] == ',' || optarg[strlen(optarg) - 1] == ',' ||
                strstr(optarg, ",,") != NULL) {
                cli_err("--users: a comma-separated list of user names, e.g. app1,app2");
                return -1;
            }
            k->users = optarg;
            given |= F_USERS;
            break;
        case O_TYPE:
            if (strcmp(optarg, "aes") != 0 && strcmp(optarg, "chacha20") != 0) {
                cli_err("--type: aes or chacha20, not '%s'", optarg);
                return -1;
            }
            k->chacha = strcmp(optarg, "chacha20") == 0;
            given |= F_TYPE;
            break;
        case O_DUE: k->due = true; given |= F_DUE; break;
        case O_JSON: k->json = true; given |= F_JSON; break;
        default:
            if (ch == '?' || cli_token_opt(&c->o, ch, optarg) != 0)
                return -1;
        }
    }
    if (optind >= argc) {
        fputs(key_usage, stderr);
        return -1;
    }
    for (*act = 0; *act < NELEM(ACTIONS); (*act)++)
        if (strcmp(argv[optind], ACTIONS[*act].name) == 0)
            break;
    if (*act == NELEM(ACTIONS)) {
        cli_err("unknown action '%s' (create, rotate, list, suspend, resume)", argv[optind]);
        return -1;
    }
    const char *a = ACTIONS[*act].name;
    optind++;
    for (size_t i = 0; i < NELEM(KOPTS); i++)
        if ((given & KOPTS[i].flag) && !(ACTIONS[*act].flags & KOPTS[i].flag)) {
            cli_err("%s takes no %s", a, KOPTS[i].name);
            return -1;
        }
    bool wants = ACTIONS[*act].arg != ARG_NONE && !k->due;
    if (wants && optind >= argc) {
        cli_err("%s: give the FAMILY (see custos key --help)", a);
        return -1;
    }
    if (wants && parse_family(argv[optind++], ACTIONS[*act].arg == ARG_FAMILY_VERSION, k) != 0)
        return -1;
    if (optind < argc) {
        cli_err("%s: unexpected argument '%s'%s", a, argv[optind],
                k->due ? " (--due rotates every family that is due)" : "");
        return -1;
    }
    if (c->o.token != NULL && c->o.slot >= 0) {
        cli_err("give --token or --slot, not both");
        return -1;
    }
    return 0;
}

int key_main(int argc, char **argv)
{
    kctx c;
    kopts k;
    size_t act;
    int status;

    if (parse(argc, argv, &c, &k, &act) != 0)
        return 2;
    c.o.custos_only = true;
    if (cli_token_open(&c.t, &c.o, CKU_SO) != 0)
        return 1;
    status = ACTIONS[act].run(&c, &k);
    cli_token_close(&c.t);
    return status;
}
