/* cmd_audit.c -- `custos audit verify|export|tail|clear-alerts` (docs/audit.md): reads the audit
 * trail of a token straight from its files through libcustos_core, after checking the PIN of an
 * audit or admin user the way the module does (the PIN unseals that user's copy of the master key).
 * The CLI's own use of the trail is recorded in it too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* timegm */
#endif
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "custos.h"
#include "policy/config.h"
#include "store/store.h"
#include "util/secmem.h"

/* As src/core/login.c: the stretched PIN k gives the sealing key
 * HMAC-SHA256(k, SEAL_LABEL || name) (rows without a lookup tag use k). */
#define SEAL_LABEL "custos-pin-seal-v1"
#define K_LEN 32
#define TAIL_POLL_US 200000

const char audit_usage[] =
    "Usage: custos audit verify|export|tail|clear-alerts [OPTIONS]\n"
    "\n"
    "The audit trail of a token (docs/audit.md). An audit or admin user's PIN is asked for\n"
    "(clear-alerts: admin only).\n"
    "\n"
    "  verify               check every record's MAC and the chain head sealed in the token:\n"
    "                       \"OK: N records, chain and head intact\" or\n"
    "                       \"BROKEN at record S: reason\" (exit 1)\n"
    "  export               the records as JSON lines on standard output, oldest first\n"
    "  tail                 the last records (-n N, default 10); with -f, follow the trail\n"
    "  clear-alerts         lift decrypt-rate alerts in every process using the token\n"
    "\n"
    "Options:\n"
    "  --token LABEL        the token with this label (default: the only one)\n"
    "  --slot N             the token of slot N\n"
    "  --user NAME          the user to log in as (required)\n"
    "  --pin-file FILE      read the PIN from the first line of FILE (default: ask on the terminal)\n"
    "  --since T, --until T export: records from/until T (RFC 3339, e.g. 2024-05-01T12:00:00Z,\n"
    "                       or seconds since the epoch)\n"
    "  -n N                 tail: how many records (default 10)\n"
    "  -f, --follow         tail: keep printing new records (a poll every 200 ms)\n"
    "  --json               verify: print the result as one JSON object\n"
    "\n"
    "The store folder comes from the configuration (CUSTOS_CONF, /etc/custos/custos.conf).\n";

typedef struct opts {
    const char *label;
    long slot;              /* -1: not given */
    const char *user;
    const char *pin_file;
    int64_t since_us, until_us;
    unsigned long tail_n;
    bool follow;
    bool json;
} opts;

/* A token the command works on, and who logged in. */
typedef struct cmd {
    custos_config cfg;
    char path[PATH_MAX + 32];
    store *st;
    audit_log *log;
    store_user user;
    bool crypto;
} cmd;

typedef int (*action_fn)(cmd *s, const opts *o);

/* ---- times -------------------------------------------------------------------------------------- */

/* RFC 3339 ("2024-05-01T12:00:00Z", "...:00.5+02:00") or seconds since the epoch. */
static int parse_time(const char *s, int64_t *us)
{
    struct tm tm;
    char *end;
    long long secs;
    int64_t frac = 0, scale = 100000;

    errno = 0;
    secs = strtoll(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0') {
        *us = (int64_t)secs * 1000000;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%d", &tm);
    if (end == NULL || (*end != 'T' && *end != 't' && *end != ' '))
        return -1;
    end = strptime(end + 1, "%H:%M:%S", &tm);
    if (end == NULL)
        return -1;
    if (*end == '.') {
        for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
            if (scale > 0)
                frac += (*end - '0') * scale;
    }
    time_t t = timegm(&tm);
    if (*end == 'Z' || *end == 'z') {
        end++;
    } else if (*end == '+' || *end == '-') {
        int hh, mm, n = 0;
        if (sscanf(end + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5)
            return -1;
        t -= (*end == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
        end += 6;
    } else {
        return -1;
    }
    if (*end != '\0')
        return -1;
    *us = (int64_t)t * 1000000 + frac;
    return 0;
}

/* ---- finding the token -------------------------------------------------------------------------- */

static bool token_file_name(const char *name, long *slot)
{
    char *end;
    if (strncmp(name, "token-", 6) != 0)
        return false;
    errno = 0;
    *slot = strtol(name + 6, &end, 10);
    return errno == 0 && end != name + 6 && strcmp(end, ".db") == 0 && *slot >= 0;
}

/* The token file by --slot, by --token, or the only one in the store folder. */
static int find_token(cmd *s, const opts *o)
{
    DIR *d;
    struct dirent *e;
    int found = 0;
    long slot;

    if (o->slot >= 0) {
        snprintf(s->path, sizeof(s->path), "%s/token-%ld.db", s->cfg.store_path, o->slot);
        if (access(s->path, F_OK) != 0) {
            cli_err("no token in slot %ld (%s)", o->slot, s->path);
            return -1;
        }
        return 0;
    }
    d = opendir(s->cfg.store_path);
    if (d == NULL) {
        cli_err("store folder %s: %s", s->cfg.store_path, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char path[sizeof(s->path)];
        store *st = NULL;
        store_token_info info;
        if (!token_file_name(e->d_name, &slot))
            continue;
        if (snprintf(path, sizeof(path), "%s/%.32s", s->cfg.store_path, e->d_name) >=
            (int)sizeof(path))
            continue;
        if (store_open(path, &st) != CKR_OK)
            continue;
        bool match = store_token_get(st, &info) == CKR_OK &&
                     (o->label == NULL || strcmp(info.label, o->label) == 0);
        store_close(st);
        if (!match)
            continue;
        found++;
        memcpy(s->path, path, sizeof(s->path));
    }
    closedir(d);
    if (found == 1)
        return 0;
    if (found == 0 && o->label != NULL)
        cli_err("no token labelled '%s' in %s", o->label, s->cfg.store_path);
    else if (found == 0)
        cli_err("no token in %s", s->cfg.store_path);
    else
        cli_err("%d tokens in %s: choose one with --token LABEL or --slot N", found,
                s->cfg.store_path);
    return -1;
}

/* ---- logging in --------------------------------------------------------------------------------- */

/* The PIN check of src/core/login.c for a named user: CKR_OK, CKR_PIN_INCORRECT (counted
 * towards lockout), CKR_PIN_LOCKED (locked or disabled), CKR_USER_PIN_NOT_INITIALIZED. */
static CK_RV check_pin(cmd *s, const char *name, const char *pin)
{
    CK_RV rv;
    store_token_info info;
    uint8_t k[K_LEN], kek[K_LEN];
    uint8_t *mk = secmem_alloc(STORE_MK_LEN);
    crypto_hmac *h = NULL;
    store_user *u = &s->user;

    ENSURE(mk != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(store_token_get(s->st, &info));
    GUARD_OUT(store_user_get(s->st, name, u));
    /* Names starting with '*' are the token's anonymous failure counters. */
    ENSURE_OUT(name[0] != '*', CKR_USER_PIN_NOT_INITIALIZED);
    ENSURE_OUT(!(u->flags & STORE_USER_DISABLED) && u->failures < s->cfg.pin_max_retries,
               CKR_PIN_LOCKED);
    GUARD_OUT(crypto_kdf(&u->kdf, (const uint8_t *)pin, strlen(pin), u->salt, sizeof(u->salt), k,
                         sizeof(k)));
    if (u->has_lookup) {
        GUARD_OUT(crypto_hmac_new(MD_SHA256, k, sizeof(k), &h));
        GUARD_OUT(crypto_hmac_update(h, (const uint8_t *)SEAL_LABEL, strlen(SEAL_LABEL)));
        GUARD_OUT(crypto_hmac_update(h, (const uint8_t *)name, strlen(name)));
        GUARD_OUT(crypto_hmac_final(h, kek));
    } else {
        memcpy(kek, k, sizeof(kek));
    }
    rv = store_unseal_mk(info.serial, name, kek, u->sealed_mk, mk);
    if (rv == CKR_PIN_INCORRECT) {
        uint32_t fails;
        CK_RV frv = store_user_fail(s->st, name, &fails);
        if (frv != CKR_OK)
            rv = frv;
    } else if (rv == CKR_OK && u->failures != 0) {
        rv = store_user_reset_failures(s->st, name);
    }
out:
    crypto_hmac_free(h);
    secmem_wipe(k, sizeof(k));
    secmem_wipe(kek, sizeof(kek));
    secmem_free(mk, STORE_MK_LEN);
    return rv;
}

/* Record the CLI's use of the trail (or its refusal) in the trail. */
static void note(cmd *s, const char *function, CK_RV rv, const char *deny)
{
    audit_event ev;
    if (s->log == NULL)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.kind = AUDIT_EVENT;
    ev.function = function;
    ev.mech = CK_UNAVAILABLE_INFORMATION;
    ev.user = s->user.name;
    ev.roles = s->user.roles;
    ev.rv = rv;
    ev.deny_reason = deny;
    if (audit_record(s->log, &ev) != CKR_OK)
        cli_err("warning: could not write this action to the audit trail");
}

static const struct {
    CK_RV rv;
    const char *why;
} LOGIN_ERRORS[] = {
    { CKR_PIN_INCORRECT, "wrong PIN" },
    { CKR_PIN_LOCKED, "PIN locked or user disabled" },
    { CKR_USER_PIN_NOT_INITIALIZED, "no such user" },
    { CKR_ACTION_PROHIBITED, "the user has no role that permits this" },
};

static const char *login_error(CK_RV rv)
{
    for (size_t i = 0; i < NELEM(LOGIN_ERRORS); i++)
        if (LOGIN_ERRORS[i].rv == rv)
            return LOGIN_ERRORS[i].why;
    return NULL;
}

static int login(cmd *s, const opts *o, const char *function, unsigned long roles)
{
    char pin[CLI_PIN_MAX], err[256], prompt[128];
    CK_RV rv;

    if (o->user == NULL) {
        cli_err("give --user NAME (a user with the audit%s role)",
                roles & CUSTOS_ROLE_AUDIT ? " or admin" : "");
        return -1;
    }
    snprintf(prompt, sizeof(prompt), "PIN of %s: ", o->user);
    if (cli_read_pin(o->pin_file, prompt, pin, sizeof(pin), err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return -1;
    }
    rv = check_pin(s, o->user, pin);
    cli_wipe(pin, sizeof(pin));
    if (rv == CKR_OK && !(s->user.roles & roles))
        rv = CKR_ACTION_PROHIBITED;
    if (rv != CKR_OK) {
        const char *why = login_error(rv);
        /* The record names the user asked for, found or not. */
        snprintf(s->user.name, sizeof(s->user.name), "%s", o->user);
        note(s, function, rv, why != NULL ? why : "login failed");
        cli_err("%s: %s (%s)", o->user, why != NULL ? why : "login failed", cli_rv_name(rv));
        return -1;
    }
    note(s, function, CKR_OK, NULL);
    return 0;
}

/* ---- the actions ---------------------------------------------------------------------------------- */

static int do_verify(cmd *s, const opts *o)
{
    audit_verify_result r;
    audit_close(s->log); /* its pending records are in the file before the walk */
    s->log = NULL;
    CK_RV rv = audit_verify(s->path, s->st, &r);
    if (rv != CKR_OK) {
        cli_err("cannot read the audit trail: %s", cli_rv_name(rv));
        return 1;
    }
    if (o->json) {
        printf("{\"ok\":%s,\"records\":%llu,\"sealed\":%llu,\"unsealed_tail\":%llu,"
               "\"first_bad\":%llu,\"reason\":\"%s\"}\n",
               r.ok ? "true" : "false", (unsigned long long)r.records,
               (unsigned long long)r.sealed_count, (unsigned long long)r.unsealed_tail,
               (unsigned long long)r.first_bad, r.reason);
    } else if (r.ok) {
        printf("OK: %llu records, chain and head intact", (unsigned long long)r.records);
        if (r.unsealed_tail)
            printf("; %llu after the sealed head (written just before a crash, not yet sealed)",
                   (unsigned long long)r.unsealed_tail);
        printf("\n");
    } else {
        printf("BROKEN at record %llu: %s\n", (unsigned long long)r.first_bad, r.reason);
    }
    return r.ok ? 0 : 1;
}

static int do_export(cmd *s, const opts *o)
{
    CK_RV rv = audit_export(s->path, o->since_us, o->until_us, STDOUT_FILENO, 0, NULL);
    if (rv != CKR_OK) {
        cli_err("export failed: %s", cli_rv_name(rv));
        return 1;
    }
    return 0;
}

static int do_tail(cmd *s, const opts *o)
{
    uint64_t last = 0;
    CK_RV rv = audit_flush(s->log, true);
    if (rv == CKR_OK)
        rv = audit_last_seq(s->path, &last);
    last = last > o->tail_n ? last - o->tail_n : 0;
    while (rv == CKR_OK) {
        rv = audit_export(s->path, INT64_MIN, INT64_MAX, STDOUT_FILENO, last, &last);
        if (!o->follow || rv != CKR_OK)
            break;
        fflush(stdout);
        usleep(TAIL_POLL_US);
    }
    if (rv != CKR_OK) {
        cli_err("tail failed: %s", cli_rv_name(rv));
        return 1;
    }
    return 0;
}

static int do_clear(cmd *s, const opts *o)
{
    CK_RV rv = audit_clear_alerts(s->log);
    if (rv != CKR_OK) {
        cli_err("could not clear the alerts: %s", cli_rv_name(rv));
        return 1;
    }
    printf("alerts cleared\n");
    return 0;
}

static const struct {
    const char *name;
    action_fn run;
    const char *function;   /* the audit record's function */
    unsigned long roles;    /* any of these may */
} ACTIONS[] = {
    { "verify", do_verify, "custos audit verify", CUSTOS_ROLE_AUDIT | CUSTOS_ROLE_ADMIN },
    { "export", do_export, "custos audit export", CUSTOS_ROLE_AUDIT | CUSTOS_ROLE_ADMIN },
    { "tail", do_tail, "custos audit tail", CUSTOS_ROLE_AUDIT | CUSTOS_ROLE_ADMIN },
    { "clear-alerts", do_clear, "custos audit clear-alerts", CUSTOS_ROLE_ADMIN },
};

/* ---- main ------------------------------------------------------------------------------------------ */

static int parse(int argc, char **argv, opts *o)
{
    static const struct option LONGOPTS[] = {
        { "token", required_argument, NULL, 't' }, { "slot", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },  { "pin-file", required_argument, NULL, 'p' },
        { "since", required_argument, NULL, 'S' }, { "until", required_argument, NULL, 'U' },
        { "follow", no_argument, NULL, 'f' },      { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    int c;

    memset(o, 0, sizeof(*o));
    o->slot = -1;
    o->since_us = INT64_MIN;
    o->until_us = INT64_MAX;
    o->tail_n = 10;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fn:", LONGOPTS, NULL)) != -1) {
        switch (c) {
        case 't': o->label = optarg; break;
        case 'u': o->user = optarg; break;
        case 'p': o->pin_file = optarg; break;
        case 'f': o->follow = true; break;
        case 'j': o->json = true; break;
        case 's':
            if (cli_parse_ulong(optarg, 0, 1000000, &v) != 0) {
                cli_err("--slot: not a slot number: %s", optarg);
                return -1;
            }
            o->slot = (long)v;
            break;
        case 'n':
            if (cli_parse_ulong(optarg, 0, 100000000, &o->tail_n) != 0) {
                cli_err("-n: not a count: %s", optarg);
                return -1;
            }
            break;
        case 'S':
        case 'U':
            if (parse_time(optarg, c == 'S' ? &o->since_us : &o->until_us) != 0) {
                cli_err("--%s: not an RFC 3339 time or epoch seconds: %s",
                        c == 'S' ? "since" : "until", optarg);
                return -1;
            }
            break;
        default: return -1;
        }
    }
    if (optind != argc) {
        cli_err("unexpected argument '%s' (see custos audit --help)", argv[optind]);
        return -1;
    }
    return 0;
}

int audit_main(int argc, char **argv)
{
    cmd s;
    opts o;
    char err[256];
    size_t act;
    int status = 2;

    memset(&s, 0, sizeof(s));
    if (argc < 2) {
        fputs(audit_usage, stderr);
        return 2;
    }
    for (act = 0; act < NELEM(ACTIONS); act++)
        if (strcmp(argv[1], ACTIONS[act].name) == 0)
            break;
    if (act == NELEM(ACTIONS)) {
        cli_err("unknown action '%s' (verify, export, tail, clear-alerts)", argv[1]);
        return 2;
    }
    if (parse(argc - 1, argv + 1, &o) != 0)
        return 2;
    if (config_load(&s.cfg, err, sizeof(err)) != CKR_OK) {
        cli_err("%s", err);
        return 2;
    }
    if (crypto_init() != CKR_OK) {
        cli_err("cannot initialise the crypto library");
        return 1;
    }
    s.crypto = true;
    status = 1;
    if (find_token(&s, &o) != 0)
        goto out;
    CK_RV rv = store_open(s.path, &s.st);
    if (rv != CKR_OK) {
        cli_err("cannot open %s: %s", s.path, cli_rv_name(rv));
        goto out;
    }
    rv = audit_open(s.path, s.st, &s.cfg.audit, &s.log);
    if (rv != CKR_OK) {
        cli_err("cannot open the audit trail of %s: %s", s.path, cli_rv_name(rv));
        goto out;
    }
    if (login(&s, &o, ACTIONS[act].function, ACTIONS[act].roles) != 0)
        goto out;
    status = ACTIONS[act].run(&s, &o);
out:
    audit_close(s.log);
    store_close(s.st);
    secmem_wipe(&s.user, sizeof(s.user));
    if (s.crypto)
        crypto_fini();
    return status;
}
