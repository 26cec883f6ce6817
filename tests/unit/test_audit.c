/* Unit tests of the audit trail (src/audit/, src/store/audit_db.c) on temp
 * tokens made with store_create: records and their fields, the chain and
 * the head under concurrent writers, tampering with the sqlite3 shell
 * (edit, delete, cut tail, forged head), aggregation and its flushes,
 * alerts, the syslog mirror, storage failures, and that no secret reaches
 * the audit file or syslog. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, nftw */
#endif
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>
#include "cunit_main.h"
#include "audit/internal.h"
#include "custos.h"
#include "store/store.h"
#include "util/secmem.h"

static char dir[64];
static const uint8_t KEK[32] = { 0x4b, 0x45, 0x4b, 0xaa, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
static const uint8_t MK[STORE_MK_LEN] = { 0x4d, 0x4b, 0x21, 0xfe, 8, 7, 6, 5, 4, 3, 2, 1, 0x77 };
static const char PIN[] = "pin-8c1f5e0d";
static const char SERIAL[] = "0123456789abcdef";

/* ---- helpers ------------------------------------------------------------- */

static const char *path_of(const char *name)
{
    static char p[4][160];
    static int next;
    char *r = p[next++ % 4];
    snprintf(r, sizeof(p[0]), "%s/%s", dir, name);
    return r;
}

static store *make_token(const char *name)
{
    store *st = NULL;
    store_token_info i;
    store_user so;
    memset(&i, 0, sizeof(i));
    memset(&so, 0, sizeof(so));
    snprintf(i.label, sizeof(i.label), "audit-test");
    snprintf(i.serial, sizeof(i.serial), "%s", SERIAL);
    i.created = 1700000000;
    snprintf(so.name, sizeof(so.name), "so");
    so.type = CKU_SO;
    so.roles = CUSTOS_ROLE_ADMIN;
    so.kdf.alg = KDF_PBKDF2_SHA256;
    so.kdf.p1 = 1000;
    memset(so.salt, 0xa5, sizeof(so.salt));
    CU_ASSERT_EQUAL_FATAL(store_seal_mk(SERIAL, "so", KEK, MK, so.sealed_mk), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_create(path_of(name), &i, &so, &st), CKR_OK);
    return st;
}

static audit_policy policy(void)
{
    audit_policy p;
    memset(&p, 0, sizeof(p));
    p.enabled = true;
    p.flush_ms = 1000;
    p.alert_window_s = 60;
    return p;
}

static audit_log *open_log(const char *name, store *st, const audit_policy *p)
{
    audit_log *a = NULL;
    CU_ASSERT_EQUAL_FATAL(audit_open(path_of(name), st, p, &a), CKR_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    return a;
}

static audit_event event(audit_kind kind, const char *function, CK_RV rv, const char *deny)
{
    audit_event e;
    memset(&e, 0, sizeof(e));
    e.kind = kind;
    e.function = function;
    e.session = 7;
    e.mech = kind == AUDIT_DATA ? CKM_AES_GCM : CK_UNAVAILABLE_INFORMATION;
    e.user = "alice";
    e.roles = CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT;
    e.key = 42;
    snprintf(e.key_label, sizeof(e.key_label), "tenant-a");
    snprintf(e.key_id, sizeof(e.key_id), "0a0b");
    snprintf(e.key_family, sizeof(e.key_family), "tenant-a");
    e.key_version = 3;
    e.rv = rv;
    e.deny_reason = deny;
    return e;
}

static void record_n(audit_log *a, int n)
{
    for (int i = 0; i < n; i++) {
        audit_event e = event(AUDIT_EVENT, "C_GenerateKey", CKR_OK, NULL);
        e.key = (CK_OBJECT_HANDLE)(100 + i);
        CU_ASSERT_EQUAL(audit_record(a, &e), CKR_OK);
    }
}

static audit_verify_result verify(const char *name, store *st)
{
    audit_verify_result r;
    CU_ASSERT_EQUAL(audit_verify(path_of(name), st, &r), CKR_OK);
    return r;
}

/* Every row of a token's audit file, in order (malloc'ed). */
typedef struct rows {
    audit_row *r;
    size_t n, cap;
} rows;

static CK_RV collect(void *ctx, const audit_row *r, const char *malformed)
{
    rows *v = ctx;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 16;
        v->r = realloc(v->r, v->cap * sizeof(*v->r));
        if (v->r == NULL)
            return CKR_HOST_MEMORY;
    }
    v->r[v->n++] = *r;
    return CKR_OK;
}

static rows read_rows(const char *name)
{
    rows v = { 0 };
    audit_db *db = NULL;
    char *p = audit_path_for(path_of(name));
    CU_ASSERT_EQUAL_FATAL(audit_db_open(p, false, &db), CKR_OK);
    CU_ASSERT_EQUAL(audit_db_scan(db, 0, INT64_MIN, INT64_MAX, collect, &v), CKR_OK);
    /* No callback, no file: refused, not a crash. */
    CU_ASSERT_EQUAL(audit_db_scan(db, 0, INT64_MIN, INT64_MAX, NULL, &v), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(audit_db_scan(NULL, 0, INT64_MIN, INT64_MAX, collect, &v), CKR_ARGUMENTS_BAD);
    audit_db_close(db);
    free(p);
    return v;
}

/* Run SQL on a file with the sqlite3 shell, as someone at the console
 * would. Returns the shell's exit status. */
static int shell(const char *file, const char *sql)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' \"%s\" >/dev/null 2>&1", file, sql);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *audit_file(const char *name)
{
    static char p[160];
    char *q = audit_path_for(path_of(name));
    snprintf(p, sizeof(p), "%s", q);
    free(q);
    return p;
}

/* Whole contents of a file (malloc'ed; *len 0 if it is missing). */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b = NULL;
    *len = 0;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = malloc((size_t)n + 1);
    if (b != NULL && fread(b, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    fclose(f);
    return b;
}

static bool file_contains(const char *path, const void *needle, size_t n)
{
    size_t len;
    uint8_t *b = slurp(path, &len);
    bool found = b != NULL && memmem(b, len, needle, n) != NULL;
    free(b);
    return found;
}

/* In a forked child: the crypto library, the token and its audit log
 * opened afresh, as a new process would; exits 2, saying why, when one of
 * them cannot be opened. */
static audit_log *child_open(const char *name, const audit_policy *p, store **cs)
{
    audit_log *ca = NULL;
    crypto_forget_after_fork();
    CK_RV rv = crypto_init();
    if (rv == CKR_OK)
        rv = store_open(path_of(name), cs);
    if (rv == CKR_OK)
        rv = audit_open(path_of(name), *cs, p, &ca);
    if (rv != CKR_OK) {
        fprintf(stderr, "child %ld: opening %s: 0x%lx\n", (long)getpid(), name, rv);
        _exit(2);
    }
    return ca;
}

/* ---- records and the chain ------------------------------------------------- */

static void test_appended_records_verify_ok_with_head_sealed(void)
{
    store *st = make_token("t1.db");
    audit_policy p = policy();
    audit_log *a = open_log("t1.db", st, &p);
    struct stat sb;

    record_n(a, 5);
    audit_close(a);
    audit_verify_result r = verify("t1.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 5);
    CU_ASSERT_EQUAL(r.sealed_count, 5);
    CU_ASSERT_EQUAL(r.unsealed_tail, 0);
    CU_ASSERT_EQUAL(r.first_bad, 0);
    CU_ASSERT_STRING_EQUAL(r.reason, "");
    CU_ASSERT_EQUAL(stat(audit_file("t1.db"), &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
    /* A second open continues the same chain with the same key. */
    a = open_log("t1.db", st, &p);
    record_n(a, 3);
    audit_close(a);
    r = verify("t1.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 8);
    CU_ASSERT_EQUAL(r.sealed_count, 8);
    store_close(st);
}

static void test_record_fields_name_who_what_which_key_and_decision(void)
{
    store *st = make_token("t2.db");
    audit_policy p = policy();
    audit_log *a = open_log("t2.db", st, &p);
    audit_event e = event(AUDIT_EVENT, "C_Login", CKR_PIN_INCORRECT, "wrong PIN");
    audit_event d = event(AUDIT_EVENT, "C_UnwrapKey", CKR_OK, NULL);
    char host[256] = "", comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL(fgets(comm, sizeof(comm), f));
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    CU_ASSERT_NOT_EQUAL(comm[0], '\0');

    e.key = 0;
    e.key_label[0] = e.key_id[0] = e.key_family[0] = '\0';
    e.key_version = 0;
    CU_ASSERT_EQUAL(audit_record(a, &e), CKR_OK);
    d.mech = CKM_AES_KEY_WRAP_KWP;
    snprintf(d.resource_label, sizeof(d.resource_label), "dek-17");
    CU_ASSERT_EQUAL(audit_record(a, &d), CKR_OK);
    audit_close(a);
    rows v = read_rows("t2.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 2);
    gethostname(host, sizeof(host) - 1);
    CU_ASSERT_EQUAL(v.r[0].seq, 1);
    CU_ASSERT_STRING_EQUAL(v.r[0].kind, "event");
    CU_ASSERT_STRING_EQUAL(v.r[0].host, host);
    CU_ASSERT_EQUAL(v.r[0].pid, getpid());
    CU_ASSERT_STRING_EQUAL(v.r[0].process, comm);
    CU_ASSERT_STRING_EQUAL(v.r[0].token_user, "alice");
    CU_ASSERT_STRING_EQUAL(v.r[0].roles, "generate,decrypt");
    CU_ASSERT_STRING_EQUAL(v.r[0].function, "C_Login");
    CU_ASSERT_STRING_EQUAL(v.r[0].mechanism, "");
    CU_ASSERT_STRING_EQUAL(v.r[0].rv, "CKR_PIN_INCORRECT");
    CU_ASSERT_STRING_EQUAL(v.r[0].decision, "denied: wrong PIN");
    CU_ASSERT_EQUAL(v.r[0].count, 1);
    CU_ASSERT_TRUE(v.r[0].time_us > 1700000000000000LL);
    CU_ASSERT_EQUAL(v.r[1].seq, 2);
    CU_ASSERT_STRING_EQUAL(v.r[1].mechanism, "CKM_AES_KEY_WRAP_KWP");
    CU_ASSERT_EQUAL(v.r[1].key_handle, 42);
    CU_ASSERT_STRING_EQUAL(v.r[1].key_label, "tenant-a");
    CU_ASSERT_STRING_EQUAL(v.r[1].key_id, "0a0b");
    CU_ASSERT_STRING_EQUAL(v.r[1].key_family, "tenant-a");
    CU_ASSERT_EQUAL(v.r[1].key_version, 3);
    CU_ASSERT_STRING_EQUAL(v.r[1].resource, "dek-17");
    CU_ASSERT_STRING_EQUAL(v.r[1].decision, "allowed");
    CU_ASSERT_EQUAL(memcmp(v.r[1].prev_mac, v.r[0].mac, AUDIT_MAC_LEN), 0);
    free(v.r);
    store_close(st);
}

/* Two processes, each with its own audit_open, append to one file at once;
 * the parent keeps its own log open across the forks. */
static void test_two_processes_append_10000_records_and_chain_verifies(void)
{
    store *st = make_token("t3.db");
    audit_policy p = policy();
    audit_log *a = open_log("t3.db", st, &p);
    pid_t kids[2];

    record_n(a, 1);
    for (int k = 0; k < 2; k++) {
        audit_fork_prepare();
        store_fork_prepare();
        kids[k] = fork();
        store_fork_release();
        audit_fork_release();
        CU_ASSERT_FATAL(kids[k] >= 0);
        if (kids[k] == 0) {
            store *cst = NULL;
            int bad = 0;
            audit_forget_after_fork(a);
            store_forget_after_fork(st);
            audit_log *ca = child_open("t3.db", &p, &cst);
            for (int i = 0; i < 5000; i++) {
                audit_event e = event(AUDIT_EVENT, k ? "C_DestroyObject" : "C_CreateObject",
                                      CKR_OK, NULL);
                e.key = (CK_OBJECT_HANDLE)i + 1;
                bad += audit_record(ca, &e) != CKR_OK;
            }
            audit_close(ca);
            store_close(cst);
            crypto_fini();
            _exit(bad ? 1 : 0);
        }
    }
    record_n(a, 1); /* the parent still writes, on a fresh connection */
    for (int k = 0; k < 2; k++) {
        int status = -1;
        CU_ASSERT_EQUAL(waitpid(kids[k], &status, 0), kids[k]);
        CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    audit_close(a);
    audit_verify_result r = verify("t3.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 10002);
    CU_ASSERT_EQUAL(r.sealed_count, 10002);
    CU_ASSERT_EQUAL(r.unsealed_tail, 0);
    store_close(st);
}

static void test_sqlite_shell_update_and_delete_are_refused_by_triggers(void)
{
    store *st = make_token("t4.db");
    audit_policy p = policy();
    audit_log *a = open_log("t4.db", st, &p);
    record_n(a, 4);
    audit_close(a);
    CU_ASSERT_NOT_EQUAL(shell(audit_file("t4.db"),
                              "UPDATE records SET decision = 'allowed' WHERE seq = 2;"), 0);
    CU_ASSERT_NOT_EQUAL(shell(audit_file("t4.db"), "DELETE FROM records WHERE seq = 4;"), 0);
    audit_verify_result r = verify("t4.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 4);
    store_close(st);
}

static void test_record_edited_with_sqlite_shell_is_named_by_verify(void)
{
    store *st = make_token("t5.db");
    audit_policy p = policy();
    audit_log *a = open_log("t5.db", st, &p);
    record_n(a, 10);
    audit_close(a);
    /* The attacker drops the fence first, then edits record 6. */
    CU_ASSERT_EQUAL(shell(audit_file("t5.db"),
                          "PRAGMA trusted_schema = ON; DROP TRIGGER records_no_update;"
                          " UPDATE records SET token_user = 'mallory' WHERE seq = 6;"), 0);
    audit_verify_result r = verify("t5.db", st);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.first_bad, 6);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, "MAC mismatch"));
    CU_ASSERT_EQUAL(r.records, 10);
    store_close(st);
}

static void test_deleted_record_is_detected(void)
{
    store *st = make_token("t6.db");
    audit_policy p = policy();
    audit_log *a = open_log("t6.db", st, &p);
    record_n(a, 10);
    audit_close(a);
    CU_ASSERT_EQUAL(shell(audit_file("t6.db"),
                          "DROP TRIGGER records_no_delete; DELETE FROM records WHERE seq = 4;"), 0);
    audit_verify_result r = verify("t6.db", st);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.first_bad, 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, "missing"));
    store_close(st);
}

static void test_cut_tail_is_detected_through_the_head(void)
{
    store *st = make_token("t7.db");
    audit_policy p = policy();
    audit_log *a = open_log("t7.db", st, &p);
    record_n(a, 10);
    audit_close(a);
    CU_ASSERT_EQUAL(shell(audit_file("t7.db"),
                          "DROP TRIGGER records_no_delete; DELETE FROM records WHERE seq > 7;"), 0);
    audit_verify_result r = verify("t7.db", st);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.first_bad, 8);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, "tail cut"));
    CU_ASSERT_EQUAL(r.records, 7);
    /* The whole file gone is a cut tail too. */
    CU_ASSERT_EQUAL(unlink(audit_file("t7.db")), 0);
    r = verify("t7.db", st);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.first_bad, 1);
    store_close(st);
}

static void test_forged_head_in_token_is_detected(void)
{
    store *st = make_token("t8.db");
    audit_policy p = policy();
    audit_log *a = open_log("t8.db", st, &p);
    record_n(a, 6);
    audit_close(a);
    store_close(st);
    /* Moving the head back (to hide a later cut) breaks its tag. */
    CU_ASSERT_EQUAL(shell(path_of("t8.db"), "UPDATE audit_head SET seq = 3;"), 0);
    CU_ASSERT_EQUAL(store_open(path_of("t8.db"), &st), CKR_OK);
    audit_verify_result r = verify("t8.db", st);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.first_bad, 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, "head tag invalid"));
    store_close(st);
}

/* A crash between the audit commit and the head: records after the head
 * are reported as unsealed, not as tampering, and the next write seals. */
static void test_records_after_the_head_are_unsealed_not_broken(void)
{
    store *st = make_token("t9.db");
    audit_policy p = policy();
    audit_log *a = open_log("t9.db", st, &p);
    audit_row extra[2];
    audit_event e = event(AUDIT_EVENT, "C_DestroyObject", CKR_OK, NULL);

    record_n(a, 3);
    audit_row_from_event(&extra[0], &a->ctx, &e, audit_now_us());
    extra[1] = extra[0];
    CU_ASSERT_EQUAL(audit_db_append(a->db, extra, 2, audit_chain_seal, a->hmac), CKR_OK);
    audit_verify_result r = verify("t9.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 5);
    CU_ASSERT_EQUAL(r.sealed_count, 3);
    CU_ASSERT_EQUAL(r.unsealed_tail, 2);
    record_n(a, 1);
    r = verify("t9.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.sealed_count, 6);
    CU_ASSERT_EQUAL(r.unsealed_tail, 0);
    audit_close(a);
    store_close(st);
}

static void test_file_of_another_chain_is_a_head_mismatch(void)
{
    store *st = make_token("ta.db");
    audit_policy p = policy();
    audit_log *a = open_log("ta.db", st, &p);
    char *f = strdup(audit_file("ta.db"));
    char cmd[512];

    record_n(a, 4);
    audit_close(a);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s.old'", f, f);
    CU_ASSERT_EQUAL(system(cmd), 0);
    a = open_log("ta.db", st, &p);
    audit_event e = event(AUDIT_EVENT, "C_SetAttributeValue", CKR_OK, NULL);
    CU_ASSERT_EQUAL(audit_record(a, &e), CKR_OK);
    audit_close(a);
    /* Replace the file by its older copy plus one different record 5. */
    snprintf(cmd, sizeof(cmd), "rm -f '%s-wal' '%s-shm' && mv '%s.old' '%s'", f, f, f, f);
    CU_ASSERT_EQUAL(system(cmd), 0);
    a = open_log("ta.db", st, &p);
    audit_row other;
    e.function = "C_Logout";
    audit_row_from_event(&other, &a->ctx, &e, audit_now_us());
    CU_ASSERT_EQUAL(audit_db_append(a->db, &other, 1, audit_chain_seal, a->hmac), CKR_OK);
    audit_verify_result r = verify("ta.db", st);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.first_bad, 5);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, "head mismatch"));
    audit_close(a);
    free(f);
    store_close(st);
}

static void test_foreign_sqlite_file_is_refused(void)
{
    store *st = make_token("tb.db");
    audit_policy p = policy();
    audit_log *a = NULL;
    CU_ASSERT_EQUAL(shell(audit_file("tb.db"), "CREATE TABLE records(x);"), 0);
    CU_ASSERT_EQUAL(audit_open(path_of("tb.db"), st, &p, &a), CKR_DEVICE_ERROR);
    CU_ASSERT_PTR_NULL(a);
    store_close(st);
}

/* ---- aggregation ------------------------------------------------------------ */

static void test_data_ops_aggregate_into_one_record_with_count(void)
{
    store *st = make_token("tc.db");
    audit_policy p = policy();
    audit_log *a = open_log("tc.db", st, &p);
    audit_event d = event(AUDIT_DATA, "C_Decrypt", CKR_OK, NULL);
    audit_event other = d;
    audit_event refused = event(AUDIT_DATA, "C_Decrypt", CKR_ACTION_PROHIBITED, "role");

    d.has_resource_digest = true;
    memset(d.resource_digest, 0xab, sizeof(d.resource_digest));
    other.session = 8;
    for (int i = 0; i < 1000; i++)
        CU_ASSERT_EQUAL(audit_record(a, &d), CKR_OK);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(audit_record(a, &other), CKR_OK);
    /* A refusal is written at once, the aggregates are not. */
    CU_ASSERT_EQUAL(audit_record(a, &refused), CKR_OK);
    rows v = read_rows("tc.db");
    CU_ASSERT_EQUAL(v.n, 1);
    CU_ASSERT_STRING_EQUAL(v.r[0].decision, "denied: role");
    free(v.r);
    CU_ASSERT_EQUAL(audit_flush_session(a, 7), CKR_OK);
    v = read_rows("tc.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 2);
    CU_ASSERT_STRING_EQUAL(v.r[1].kind, "data");
    CU_ASSERT_EQUAL(v.r[1].count, 1000);
    CU_ASSERT_EQUAL(v.r[1].session, 7);
    CU_ASSERT_TRUE(v.r[1].first_us <= v.r[1].last_us);
    CU_ASSERT_EQUAL(strspn(v.r[1].resource, "ab"), 64);
    free(v.r);
    audit_close(a); /* flushes session 8 */
    v = read_rows("tc.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 3);
    CU_ASSERT_EQUAL(v.r[2].count, 3);
    CU_ASSERT_EQUAL(v.r[2].session, 8);
    free(v.r);
    CU_ASSERT_TRUE(verify("tc.db", st).ok);
    store_close(st);
}

static void test_aggregates_flush_once_older_than_flush_interval(void)
{
    store *st = make_token("td.db");
    audit_policy p = policy();
    p.flush_ms = 100;
    audit_log *a = open_log("td.db", st, &p);
    audit_event d = event(AUDIT_DATA, "C_Encrypt", CKR_OK, NULL);

    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(audit_record(a, &d), CKR_OK);
    CU_ASSERT_EQUAL(audit_flush(a, false), CKR_OK);
    rows v = read_rows("td.db");
    CU_ASSERT_EQUAL(v.n, 0);
    free(v.r);
    usleep(150 * 1000);
    CU_ASSERT_EQUAL(audit_flush(a, false), CKR_OK);
    v = read_rows("td.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 1);
    CU_ASSERT_EQUAL(v.r[0].count, 5);
    free(v.r);
    audit_close(a);
    store_close(st);
}

static void test_each_data_op_policy_writes_every_operation(void)
{
    store *st = make_token("te.db");
    audit_policy p = policy();
    p.each_data_op = true;
    audit_log *a = open_log("te.db", st, &p);
    audit_event d = event(AUDIT_DATA, "C_Sign", CKR_OK, NULL);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(audit_record(a, &d), CKR_OK);
    rows v = read_rows("te.db");
    CU_ASSERT_EQUAL(v.n, 4);
    free(v.r);
    audit_close(a);
    store_close(st);
}

/* ---- alerts ----------------------------------------------------------------- */

static size_t count_kind(const char *name, const char *kind)
{
    rows v = read_rows(name);
    size_t n = 0;
    for (size_t i = 0; i < v.n; i++)
        n += strcmp(v.r[i].kind, kind) == 0;
    free(v.r);
    return n;
}

static void test_alert_fires_above_threshold_denies_and_clears_after_window(void)
{
    store *st = make_token("tf.db");
    audit_policy p = policy();
    p.alert_window_s = 1;
    p.alert_decrypt_per_user = 5;
    p.alert_deny = true;
    audit_log *a = open_log("tf.db", st, &p);

    for (int i = 0; i < 5; i++)
        CU_ASSERT_FALSE(audit_decrypt_alert(a, "bob", 9, "k9"));
    CU_ASSERT_EQUAL(count_kind("tf.db", "alert"), 0);
    CU_ASSERT_TRUE(audit_decrypt_alert(a, "bob", 9, "k9"));
    CU_ASSERT_TRUE(audit_decrypt_alert(a, "bob", 9, "k9"));
    /* Another user is not affected. */
    CU_ASSERT_FALSE(audit_decrypt_alert(a, "carol", 9, "k9"));
    rows v = read_rows("tf.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 1);
    CU_ASSERT_STRING_EQUAL(v.r[0].kind, "alert");
    CU_ASSERT_STRING_EQUAL(v.r[0].decision, "denied: decrypt rate above 5 per 1 s for user bob");
    CU_ASSERT_STRING_EQUAL(v.r[0].rv, "CKR_ACTION_PROHIBITED");
    free(v.r);
    usleep(1100 * 1000);
    CU_ASSERT_FALSE(audit_decrypt_alert(a, "bob", 9, "k9"));
    CU_ASSERT_EQUAL(count_kind("tf.db", "alert"), 1);
    audit_close(a);
    store_close(st);
}

static void test_per_key_alert_and_clear_from_another_process_lifts_deny(void)
{
    store *st = make_token("tg.db");
    audit_policy p = policy();
    p.alert_decrypt_per_key = 3;
    p.alert_deny = true;
    audit_log *a = open_log("tg.db", st, &p);
    audit_log *admin = open_log("tg.db", st, &p);

    for (int i = 0; i < 3; i++)
        CU_ASSERT_FALSE(audit_decrypt_alert(a, i % 2 ? "u1" : "u2", 77, "payroll"));
    CU_ASSERT_TRUE(audit_decrypt_alert(a, "u3", 77, "payroll"));
    CU_ASSERT_FALSE(audit_decrypt_alert(a, "u3", 78, "other"));
    CU_ASSERT_TRUE(audit_decrypt_alert(a, "u3", 77, "payroll"));
    /* `custos audit clear-alerts` runs elsewhere: within a second this
     * process stops refusing, long before the 60 s window ends. */
    CU_ASSERT_EQUAL(audit_clear_alerts(admin), CKR_OK);
    usleep(1100 * 1000);
    CU_ASSERT_FALSE(audit_decrypt_alert(a, "u3", 77, "payroll"));
    rows v = read_rows("tg.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 1);
    CU_ASSERT_STRING_EQUAL(v.r[0].decision,
                           "denied: decrypt rate above 3 per 60 s for key payroll");
    CU_ASSERT_EQUAL(v.r[0].key_handle, 77);
    free(v.r);
    audit_close(admin);
    audit_close(a);
    store_close(st);
}

static void test_alert_in_log_mode_records_but_does_not_deny(void)
{
    store *st = make_token("th.db");
    audit_policy p = policy();
    p.alert_decrypt_per_user = 2;
    audit_log *a = open_log("th.db", st, &p);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_FALSE(audit_decrypt_alert(a, "dave", 1, ""));
    rows v = read_rows("th.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 1); /* once per window */
    CU_ASSERT_STRING_EQUAL(v.r[0].decision, "alert: decrypt rate above 2 per 60 s for user dave");
    CU_ASSERT_STRING_EQUAL(v.r[0].rv, "CKR_OK");
    free(v.r);
    audit_close(a);
    store_close(st);
}

/* ---- sinks, failures, secrets -------------------------------------------------- */

static int listen_dgram(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void test_syslog_mirror_sends_each_record_as_json_and_alerts_as_warnings(void)
{
    store *st = make_token("ti.db");
    audit_policy p = policy();
    char sock[160], msg[AUDIT_JSON_MAX + 128];
    p.syslog = true;
    p.alert_decrypt_per_key = 1;
    snprintf(sock, sizeof(sock), "%s", path_of("log.sock"));
    int fd = listen_dgram(sock);
    audit_syslog_set_path(sock);
    audit_log *a = open_log("ti.db", st, &p);
    audit_event e = event(AUDIT_EVENT, "C_Login", CKR_PIN_INCORRECT, "wrong PIN");

    CU_ASSERT_EQUAL(audit_record(a, &e), CKR_OK);
    ssize_t n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
    CU_ASSERT_FATAL(n > 0);
    msg[n] = '\0';
    CU_ASSERT_EQUAL(strncmp(msg, "<86>", 4), 0); /* authpriv.info */
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, " custos["));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "]: {\"seq\":1,\"time\":\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "\"rv\":\"CKR_PIN_INCORRECT\""));
    CU_ASSERT_EQUAL(msg[n - 1], '}');
    CU_ASSERT_FALSE(audit_decrypt_alert(a, "eve", 5, "k5"));
    CU_ASSERT_FALSE(audit_decrypt_alert(a, "eve", 5, "k5"));
    n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT); /* the alert record */
    CU_ASSERT_FATAL(n > 0);
    msg[n] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "\"kind\":\"alert\""));
    n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT); /* the warning */
    CU_ASSERT_FATAL(n > 0);
    msg[n] = '\0';
    CU_ASSERT_EQUAL(strncmp(msg, "<84>", 4), 0); /* authpriv.warning */
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "decrypt rate above 1 per 60 s for key k5"));
    audit_close(a);
    audit_syslog_set_path("/dev/log");
    close(fd);
    store_close(st);
}

static void test_full_disk_gives_device_memory_and_keeps_committed_records(void)
{
    store *st = make_token("tj.db");
    audit_policy p = policy();
    audit_log *a = open_log("tj.db", st, &p);
    audit_event d = event(AUDIT_DATA, "C_Decrypt", CKR_OK, NULL);
    CK_RV rv = CKR_OK;
    int written = 0;

    record_n(a, 2);
    audit_db_limit_pages(a->db, 8);
    for (int i = 0; i < 1000 && rv == CKR_OK; i++) {
        audit_event e = event(AUDIT_EVENT, "C_CreateObject", CKR_OK, NULL);
        rv = audit_record(a, &e);
        written += rv == CKR_OK;
    }
    CU_ASSERT_EQUAL(rv, CKR_DEVICE_MEMORY);
    /* While writes fail, aggregated operations report it too, so that a
     * caller under `required` refuses them. */
    CU_ASSERT_EQUAL(audit_record(a, &d), CKR_DEVICE_MEMORY);
    CU_ASSERT_EQUAL(audit_flush(a, true), CKR_DEVICE_MEMORY);
    audit_db_limit_pages(a->db, 0);
    CU_ASSERT_EQUAL(audit_flush(a, true), CKR_OK); /* the kept aggregate */
    CU_ASSERT_EQUAL(audit_record(a, &d), CKR_OK);
    audit_close(a);
    audit_verify_result r = verify("tj.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, (uint64_t)(2 + written + 2));
    store_close(st);
}

static void test_json_line_escapes_quotes_controls_and_bad_utf8(void)
{
    audit_row r;
    audit_ctx c;
    char line[AUDIT_JSON_MAX];
    audit_event e = event(AUDIT_EVENT, "C_CreateObject", CKR_OK, NULL);

    memset(&c, 0, sizeof(c));
    snprintf(e.key_label, sizeof(e.key_label), "a\"b\\c\nd\xff\xc3\xa9");
    audit_row_from_event(&r, &c, &e, 1714564800123456LL);
    size_t n = audit_row_json(&r, line, sizeof(line));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"key_label\":\"a\\\"b\\\\c\\u000ad\\ufffd\xc3\xa9\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"time\":\"2024-05-01T12:00:00.123456Z\","
                                        "\"time_us\":1714564800123456"));
    CU_ASSERT_EQUAL(line[n - 1], '\n');
    /* Too small a buffer gives 0, never a cut line. */
    CU_ASSERT_EQUAL(audit_row_json(&r, line, 64), 0);
}

static void test_export_filters_by_time_and_sequence(void)
{
    store *st = make_token("tk.db");
    audit_policy p = policy();
    audit_log *a = open_log("tk.db", st, &p);
    char out[160];
    uint64_t last = 0;
    size_t len;

    CU_ASSERT_EQUAL(audit_last_seq(path_of("tk.db"), &last), CKR_OK);
    CU_ASSERT_EQUAL(last, 0);
    CU_ASSERT_EQUAL(audit_last_seq(path_of("no-such-token.db"), &last), CKR_OK);
    CU_ASSERT_EQUAL(last, 0);
    record_n(a, 5);
    CU_ASSERT_EQUAL(audit_last_seq(path_of("tk.db"), &last), CKR_OK);
    CU_ASSERT_EQUAL(last, 5);
    rows v = read_rows("tk.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 5);
    snprintf(out, sizeof(out), "%s", path_of("export.jsonl"));
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_EQUAL(audit_export(path_of("tk.db"), v.r[1].time_us, v.r[3].time_us, fd, 0, &last),
                    CKR_OK);
    close(fd);
    char *text = (char *)slurp(out, &len);
    CU_ASSERT_FATAL(text != NULL);
    text[len] = '\0';
    CU_ASSERT_PTR_NULL(strstr(text, "{\"seq\":1,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "{\"seq\":2,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "{\"seq\":4,"));
    CU_ASSERT_PTR_NULL(strstr(text, "{\"seq\":5,"));
    CU_ASSERT_EQUAL(last, 4);
    free(text);
    /* tail: only what comes after the last one seen. */
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_EQUAL(audit_export(path_of("tk.db"), INT64_MIN, INT64_MAX, fd, 4, &last), CKR_OK);
    close(fd);
    text = (char *)slurp(out, &len);
    CU_ASSERT_FATAL(text != NULL);
    text[len] = '\0';
    CU_ASSERT_EQUAL(strncmp(text, "{\"seq\":5,", 9), 0);
    CU_ASSERT_PTR_EQUAL(strchr(text, '\n'), text + len - 1); /* one line */
    CU_ASSERT_EQUAL(last, 5);
    free(text);
    free(v.r);
    audit_close(a);
    store_close(st);
}

static void test_no_key_pin_or_audit_key_in_audit_file_or_syslog(void)
{
    store *st = make_token("tl.db");
    audit_policy p = policy();
    char sock[160], msg[AUDIT_JSON_MAX + 128], side[200];
    uint8_t *akey = NULL;
    size_t akey_len = 0;
    p.syslog = true;
    snprintf(sock, sizeof(sock), "%s", path_of("log2.sock"));
    int fd = listen_dgram(sock);
    audit_syslog_set_path(sock);
    audit_log *a = open_log("tl.db", st, &p);

    /* Every kind of record, for a user who just typed PIN. */
    audit_event e = event(AUDIT_EVENT, "C_Login", CKR_PIN_INCORRECT, "wrong PIN");
    CU_ASSERT_EQUAL(audit_record(a, &e), CKR_OK);
    e = event(AUDIT_DATA, "C_Decrypt", CKR_OK, NULL);
    e.has_resource_digest = true;
    CU_ASSERT_EQUAL(crypto_md_oneshot(MD_SHA256, (const uint8_t *)"order-42", 8,
                                      e.resource_digest), CKR_OK);
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(audit_record(a, &e), CKR_OK);
    CU_ASSERT_EQUAL(audit_flush(a, true), CKR_OK);
    audit_close(a);
    CU_ASSERT_EQUAL(store_meta_get(st, AUDIT_KEY_META, &akey, &akey_len), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(akey_len, AUDIT_KEY_LEN);

    static const char *const SUFFIX[] = { "", "-wal" };
    for (size_t i = 0; i < ARRAY_LEN(SUFFIX); i++) {
        snprintf(side, sizeof(side), "%s%s", audit_file("tl.db"), SUFFIX[i]);
        CU_ASSERT_FALSE(file_contains(side, akey, akey_len));
        CU_ASSERT_FALSE(file_contains(side, MK, sizeof(MK)));
        CU_ASSERT_FALSE(file_contains(side, KEK, sizeof(KEK)));
        CU_ASSERT_FALSE(file_contains(side, PIN, strlen(PIN)));
        CU_ASSERT_FALSE(file_contains(side, "order-42", 8));
    }
    /* The positive control: the records are in there (the last close
     * moved the WAL into the file). */
    CU_ASSERT_TRUE(file_contains(audit_file("tl.db"), "C_Login", 7));
    int got = 0;
    ssize_t n;
    while ((n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT)) > 0) {
        got++;
        CU_ASSERT_PTR_NULL(memmem(msg, (size_t)n, akey, akey_len));
        CU_ASSERT_PTR_NULL(memmem(msg, (size_t)n, PIN, strlen(PIN)));
        CU_ASSERT_PTR_NULL(memmem(msg, (size_t)n, "order-42", 8));
    }
    CU_ASSERT_EQUAL(got, 2);
    audit_syslog_set_path("/dev/log");
    close(fd);
    secmem_wipe(akey, akey_len);
    free(akey);
    store_close(st);
}

static void test_disabled_audit_writes_nothing(void)
{
    store *st = make_token("tm.db");
    audit_policy p = policy();
    p.enabled = false;
    audit_log *a = open_log("tm.db", st, &p);
    record_n(a, 3);
    audit_close(a);
    rows v = read_rows("tm.db");
    CU_ASSERT_EQUAL(v.n, 0);
    free(v.r);
    store_close(st);
}

/* ---- the outbox ------------------------------------------------------------------- */

/* One integer from the token file, read with a connection of its own. */
static int64_t token_int(const char *name, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path_of(name), &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static int64_t outbox_count(const char *name)
{
    return token_int(name, "SELECT count(*) FROM audit_outbox");
}

/* What object_add does for a token object: the object and the record of
 * its creation in one commit, then tell the log. */
static CK_OBJECT_HANDLE insert_audited(store *st, audit_log *a, const char *label,
                                       int64_t high_bits)
{
    store_audit_rec rec;
    audit_event e = event(AUDIT_EVENT, "C_GenerateKey", CKR_OK, NULL);
    e.key = 0;
    snprintf(e.key_label, sizeof(e.key_label), "%s", label);
    audit_outbox_row(a, &e, &rec.row);
    rec.row.key_handle = high_bits;
    rec.names_object = true;
    store_attr at = { CKA_LABEL, (uint8_t *)label, strlen(label), false };
    CK_OBJECT_HANDLE h = 0;
    CU_ASSERT_EQUAL(store_object_insert_audited(st, NULL, &at, 1, &rec, &h), CKR_OK);
    audit_outbox_added(a);
    return h;
}

static void test_outbox_records_join_the_chain_before_the_next_record(void)
{
    store *st = make_token("ob1.db");
    audit_policy p = policy();
    audit_log *a = open_log("ob1.db", st, &p);
    CK_OBJECT_HANDLE h1 = insert_audited(st, a, "ob-k1", (int64_t)5 << 32);
    CK_OBJECT_HANDLE h2 = insert_audited(st, a, "ob-k2", 0);
    /* Durable with the objects, not yet in the chain (flush_ms is 1 s). */
    CU_ASSERT_EQUAL(outbox_count("ob1.db"), 2);
    rows v = read_rows("ob1.db");
    CU_ASSERT_EQUAL(v.n, 0);
    free(v.r);
    /* The next record written takes them first, in one transaction. */
    record_n(a, 1);
    v = read_rows("ob1.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 3);
    CU_ASSERT_EQUAL(v.r[0].seq, 1);
    CU_ASSERT_STRING_EQUAL(v.r[0].function, "C_GenerateKey");
    CU_ASSERT_STRING_EQUAL(v.r[0].key_label, "ob-k1");
    CU_ASSERT_EQUAL((CK_OBJECT_HANDLE)v.r[0].key_handle, ((CK_OBJECT_HANDLE)5 << 32) | h1);
    CU_ASSERT_STRING_EQUAL(v.r[0].rv, "CKR_OK");
    CU_ASSERT_STRING_EQUAL(v.r[0].decision, "allowed");
    CU_ASSERT_STRING_EQUAL(v.r[0].token_user, "alice");
    CU_ASSERT_EQUAL(v.r[0].pid, (int64_t)getpid());
    CU_ASSERT_STRING_EQUAL(v.r[1].key_label, "ob-k2");
    CU_ASSERT_EQUAL((CK_OBJECT_HANDLE)v.r[1].key_handle, h2);
    CU_ASSERT_EQUAL(v.r[2].key_handle, 100);
    CU_ASSERT_TRUE(v.r[0].time_us <= v.r[1].time_us && v.r[1].time_us <= v.r[2].time_us);
    free(v.r);
    CU_ASSERT_EQUAL(outbox_count("ob1.db"), 0);
    CU_ASSERT_EQUAL(token_int("ob1.db", "SELECT seq FROM audit_head"), 3);
    audit_close(a);
    audit_verify_result r = verify("ob1.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 3);
    CU_ASSERT_EQUAL(r.sealed_count, 3);
    store_close(st);
}

static void test_outbox_drains_after_the_flush_interval_or_a_batch(void)
{
    store *st = make_token("ob2.db");
    audit_policy p = policy();
    p.flush_ms = 50;
    audit_log *a = open_log("ob2.db", st, &p);
    insert_audited(st, a, "ob-first", 0);
    CU_ASSERT_EQUAL(audit_flush(a, false), CKR_OK);
    rows v = read_rows("ob2.db");
    CU_ASSERT_EQUAL(v.n, 0);
    free(v.r);
    usleep(120 * 1000);
    CU_ASSERT_EQUAL(audit_flush(a, false), CKR_OK);
    v = read_rows("ob2.db");
    CU_ASSERT_EQUAL(v.n, 1);
    free(v.r);
    /* A full batch is due at once. */
    for (int i = 0; i < OUTBOX_BATCH; i++)
        insert_audited(st, a, "ob-batch", 0);
    CU_ASSERT_EQUAL(audit_flush(a, false), CKR_OK);
    v = read_rows("ob2.db");
    CU_ASSERT_EQUAL(v.n, 1 + OUTBOX_BATCH);
    free(v.r);
    CU_ASSERT_EQUAL(outbox_count("ob2.db"), 0);
    /* Nothing pending: a flush writes nothing. */
    CU_ASSERT_EQUAL(audit_flush(a, true), CKR_OK);
    v = read_rows("ob2.db");
    CU_ASSERT_EQUAL(v.n, 1 + OUTBOX_BATCH);
    free(v.r);
    audit_close(a);
    CU_ASSERT_TRUE(verify("ob2.db", st).ok);
    store_close(st);
}

static void test_outbox_left_by_a_killed_process_is_drained_by_the_next_open(void)
{
    store *st = make_token("ob3.db");
    store_close(st);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        store *cs = NULL;
        audit_policy p = policy();
        audit_log *ca = child_open("ob3.db", &p, &cs);
        for (int i = 0; i < 3; i++)
            insert_audited(cs, ca, "ob-orphan", 0);
        _exit(0); /* killed: no flush, no close */
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(outbox_count("ob3.db"), 3);
    CU_ASSERT_EQUAL_FATAL(store_open(path_of("ob3.db"), &st), CKR_OK);
    audit_policy p = policy();
    audit_log *a = open_log("ob3.db", st, &p);
    /* Due at the first flush check after the open. */
    CU_ASSERT_EQUAL(audit_flush(a, false), CKR_OK);
    rows v = read_rows("ob3.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 3);
    CU_ASSERT_EQUAL(v.r[0].pid, (int64_t)pid);
    CU_ASSERT_STRING_EQUAL(v.r[2].key_label, "ob-orphan");
    free(v.r);
    CU_ASSERT_EQUAL(outbox_count("ob3.db"), 0);
    audit_close(a);
    CU_ASSERT_TRUE(verify("ob3.db", st).ok);
    store_close(st);
}

static void test_outbox_rows_whose_delete_was_lost_are_not_chained_twice(void)
{
    store *st = make_token("ob4.db");
    audit_policy p = policy();
    audit_log *a = open_log("ob4.db", st, &p);
    insert_audited(st, a, "ob-a", 0);
    insert_audited(st, a, "ob-b", 0);
    CU_ASSERT_EQUAL(shell(path_of("ob4.db"), "CREATE TABLE keep AS SELECT * FROM audit_outbox"), 0);
    CU_ASSERT_EQUAL(audit_flush(a, true), CKR_OK);
    CU_ASSERT_EQUAL(outbox_count("ob4.db"), 0);
    /* The token's delete of what was drained lost (a power cut after the
     * audit file's commit): the same rows, same ids, back in the outbox. */
    CU_ASSERT_EQUAL(shell(path_of("ob4.db"), "INSERT INTO audit_outbox SELECT * FROM keep"), 0);
    CU_ASSERT_EQUAL(outbox_count("ob4.db"), 2);
    insert_audited(st, a, "ob-c", 0);
    CU_ASSERT_EQUAL(audit_flush(a, true), CKR_OK);
    rows v = read_rows("ob4.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 3);
    CU_ASSERT_STRING_EQUAL(v.r[0].key_label, "ob-a");
    CU_ASSERT_STRING_EQUAL(v.r[1].key_label, "ob-b");
    CU_ASSERT_STRING_EQUAL(v.r[2].key_label, "ob-c");
    free(v.r);
    CU_ASSERT_EQUAL(outbox_count("ob4.db"), 0);
    audit_close(a);
    CU_ASSERT_TRUE(verify("ob4.db", st).ok);
    store_close(st);
}

static void test_malformed_outbox_row_is_recorded_not_dropped(void)
{
    store *st = make_token("ob5.db");
    CU_ASSERT_EQUAL(shell(path_of("ob5.db"), "INSERT INTO audit_outbox(row) VALUES (x'0102')"), 0);
    audit_policy p = policy();
    audit_log *a = open_log("ob5.db", st, &p);
    audit_close(a);
    rows v = read_rows("ob5.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 1);
    CU_ASSERT_STRING_EQUAL(v.r[0].function, "audit outbox");
    CU_ASSERT_STRING_EQUAL(v.r[0].rv, "CKR_DEVICE_ERROR");
    CU_ASSERT_PTR_NOT_NULL(strstr(v.r[0].decision, "malformed"));
    free(v.r);
    CU_ASSERT_EQUAL(outbox_count("ob5.db"), 0);
    CU_ASSERT_TRUE(verify("ob5.db", st).ok);
    store_close(st);
}

static void test_refused_guarded_insert_leaves_no_outbox_row(void)
{
    store *st = make_token("ob6.db");
    audit_policy p = policy();
    audit_log *a = open_log("ob6.db", st, &p);
    insert_audited(st, a, "ob-taken", 0);
    store_audit_rec rec;
    audit_event e = event(AUDIT_EVENT, "C_GenerateKey", CKR_OK, NULL);
    audit_outbox_row(a, &e, &rec.row);
    rec.names_object = true;
    store_attr at = { CKA_LABEL, (uint8_t *)"ob-new", 6, false };
    CK_ATTRIBUTE guard = { CKA_LABEL, (void *)"ob-taken", 8 };
    CK_OBJECT_HANDLE h = 0;
    CU_ASSERT_EQUAL(store_object_insert_unless(st, NULL, &at, 1, &guard, 0, NULL, 0, &rec, &h),
                    CKR_ACTION_PROHIBITED);
    CU_ASSERT_EQUAL(outbox_count("ob6.db"), 1);
    guard.pValue = (void *)"ob-free";
    guard.ulValueLen = 7;
    CU_ASSERT_EQUAL(store_object_insert_unless(st, NULL, &at, 1, &guard, 0, NULL, 0, &rec, &h),
                    CKR_OK);
    CU_ASSERT_EQUAL(outbox_count("ob6.db"), 2);
    audit_outbox_added(a);
    audit_close(a);
    rows v = read_rows("ob6.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 2);
    CU_ASSERT_EQUAL((CK_OBJECT_HANDLE)v.r[1].key_handle, (CK_OBJECT_HANDLE)42 | h);
    free(v.r);
    store_close(st);
}

/* Two processes make objects through the outbox while each also writes
 * records directly (so each drains the other's rows too): every record
 * joins the chain exactly once, each process's in the order of its calls. */
static void test_two_processes_drain_each_others_outbox_rows_exactly_once(void)
{
    store *st = make_token("ob7.db");
    store_close(st);
    enum { PER = 300 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CU_ASSERT_FATAL(kids[k] >= 0);
        if (kids[k] == 0) {
            store *cs = NULL;
            audit_policy p = policy();
            p.flush_ms = 5;
            int bad = 0;
            audit_log *ca = child_open("ob7.db", &p, &cs);
            for (int i = 0; i < PER; i++) {
                insert_audited(cs, ca, k ? "ob-kid1" : "ob-kid0", 0);
                if (i % 7 == 0) {
                    audit_event e = event(AUDIT_EVENT, "C_Login", CKR_OK, NULL);
                    e.key = (CK_OBJECT_HANDLE)i;
                    bad += audit_record(ca, &e) != CKR_OK;
                }
                bad += audit_flush(ca, false) != CKR_OK;
            }
            audit_close(ca);
            store_close(cs);
            crypto_fini();
            _exit(bad ? 1 : 0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int status = -1;
        CU_ASSERT_EQUAL(waitpid(kids[k], &status, 0), kids[k]);
        CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CU_ASSERT_EQUAL(outbox_count("ob7.db"), 0);
    rows v = read_rows("ob7.db");
    size_t logins = 2 * ((PER + 6) / 7);
    CU_ASSERT_EQUAL(v.n, 2 * PER + logins);
    /* Each object named once; each process's records in its own order. */
    size_t made[2] = { 0, 0 };
    int64_t last_handle[2] = { 0, 0 };
    bool dup = false, order = true;
    for (size_t i = 0; i < v.n; i++) {
        if (strcmp(v.r[i].function, "C_GenerateKey") != 0)
            continue;
        int k = strcmp(v.r[i].key_label, "ob-kid1") == 0;
        made[k]++;
        order &= v.r[i].key_handle > last_handle[k];
        last_handle[k] = v.r[i].key_handle;
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(v.r[j].function, "C_GenerateKey") == 0 &&
                   v.r[j].key_handle == v.r[i].key_handle;
    }
    CU_ASSERT_EQUAL(made[0], PER);
    CU_ASSERT_EQUAL(made[1], PER);
    CU_ASSERT_FALSE(dup);
    CU_ASSERT_TRUE(order);
    free(v.r);
    CU_ASSERT_EQUAL_FATAL(store_open(path_of("ob7.db"), &st), CKR_OK);
    audit_verify_result r = verify("ob7.db", st);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.records, 2 * PER + logins);
    CU_ASSERT_EQUAL(r.sealed_count, 2 * PER + logins);
    store_close(st);
}

/* Processes opening a token's new audit file at the same moment (services
 * started together after C_InitToken): every one gets the trail. The switch
 * of the new file to WAL used to fail with SQLITE_BUSY in all but one, which
 * then ran without an audit trail. */
static void test_processes_opening_a_new_audit_file_together_all_get_it(void)
{
    enum { KIDS = 4, ROUNDS = 12 };
    int failed = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char name[32];
        snprintf(name, sizeof(name), "ob8-%d.db", round);
        store *st = make_token(name);
        store_close(st);
        pid_t kids[KIDS];
        for (int k = 0; k < KIDS; k++) {
            kids[k] = fork();
            CU_ASSERT_FATAL(kids[k] >= 0);
            if (kids[k] == 0) {
                store *cs = NULL;
                audit_policy p = policy();
                audit_log *ca = child_open(name, &p, &cs);
                audit_event e = event(AUDIT_EVENT, "C_Login", CKR_OK, NULL);
                CK_RV crv = audit_record(ca, &e);
                if (crv != CKR_OK) {
                    fprintf(stderr, "child %d: audit_record: 0x%lx\n", k, crv);
                    _exit(4);
                }
                audit_close(ca);
                store_close(cs);
                crypto_fini();
                _exit(0);
            }
        }
        for (int k = 0; k < KIDS; k++) {
            int status = -1;
            CU_ASSERT_EQUAL(waitpid(kids[k], &status, 0), kids[k]);
            failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        CU_ASSERT_EQUAL_FATAL(store_open(path_of(name), &st), CKR_OK);
        audit_verify_result r = verify(name, st);
        CU_ASSERT_TRUE(r.ok);
        CU_ASSERT_EQUAL(r.records, KIDS);
        store_close(st);
    }
    CU_ASSERT_EQUAL(failed, 0);
}

/* C_DestroyObject and C_SetAttributeValue of a token object: the change and
 * its record in one commit, or neither. */
static void test_destroy_and_update_commit_their_records_with_them(void)
{
    store *st = make_token("ob9.db");
    audit_policy p = policy();
    audit_log *a = open_log("ob9.db", st, &p);
    CK_OBJECT_HANDLE h1 = 0, h2 = 0;
    store_attr at = { CKA_LABEL, (uint8_t *)"ob-d", 4, false };
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, &at, 1, &h1), CKR_OK);
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, &at, 1, &h2), CKR_OK);
    store_audit_rec rec;
    audit_event e = event(AUDIT_EVENT, "C_DestroyObject", CKR_OK, NULL);
    e.key = h1;
    audit_outbox_row(a, &e, &rec.row);
    rec.names_object = false;
    CU_ASSERT_EQUAL(store_object_delete_audited(st, h1, &rec), CKR_OK);
    CU_ASSERT_EQUAL(outbox_count("ob9.db"), 1);
    /* Gone already: refused, and no record of a delete that did not happen. */
    CU_ASSERT_EQUAL(store_object_delete_audited(st, h1, &rec), CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(outbox_count("ob9.db"), 1);
    e = event(AUDIT_EVENT, "C_SetAttributeValue", CKR_OK, NULL);
    e.key = h2;
    audit_outbox_row(a, &e, &rec.row);
    store_attr nl = { CKA_LABEL, (uint8_t *)"ob-renamed", 10, false };
    CU_ASSERT_EQUAL(store_object_update_audited(st, NULL, h1, &nl, 1, &rec),
                    CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(outbox_count("ob9.db"), 1);
    CU_ASSERT_EQUAL(store_object_update_audited(st, NULL, h2, &nl, 1, &rec), CKR_OK);
    CU_ASSERT_EQUAL(outbox_count("ob9.db"), 2);
    audit_outbox_added(a);
    audit_outbox_added(a);
    audit_close(a);
    rows v = read_rows("ob9.db");
    CU_ASSERT_EQUAL_FATAL(v.n, 2);
    CU_ASSERT_STRING_EQUAL(v.r[0].function, "C_DestroyObject");
    CU_ASSERT_EQUAL((CK_OBJECT_HANDLE)v.r[0].key_handle, h1);
    CU_ASSERT_STRING_EQUAL(v.r[1].function, "C_SetAttributeValue");
    CU_ASSERT_EQUAL((CK_OBJECT_HANDLE)v.r[1].key_handle, h2);
    free(v.r);
    CU_ASSERT_TRUE(verify("ob9.db", st).ok);
    store_close(st);
}

static void test_packed_row_round_trips_and_refuses_bad_bytes(void)
{
    audit_row r, back;
    uint8_t buf[AUDIT_PACKED_MAX + 8];
    memset(&r, 0, sizeof(r));
    for (size_t i = 1; i < AUDIT_NCOLS; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        char *p = (char *)&r + c->off;
        if (c->type == AUDIT_COL_TEXT)
            memset(p, 'a' + (int)(i % 26), c->size - 1); /* every text at its longest */
        else
            *(int64_t *)(void *)p = i % 2 ? -(int64_t)i : INT64_MAX - (int64_t)i;
    }
    size_t n = audit_row_pack(&r, buf, sizeof(buf));
    CU_ASSERT_TRUE(n > 0 && n <= AUDIT_PACKED_MAX);
    CU_ASSERT_TRUE(audit_row_unpack(buf, n, &back));
    CU_ASSERT_EQUAL(memcmp(&r, &back, sizeof(r)), 0);
    CU_ASSERT_EQUAL(audit_row_pack(&r, buf, n - 1), 0);
    CU_ASSERT_FALSE(audit_row_unpack(buf, n - 1, &back));
    buf[n] = 0;
    CU_ASSERT_FALSE(audit_row_unpack(buf, n + 1, &back));
    CU_ASSERT_FALSE(audit_row_unpack(buf, 0, &back));
    /* A NUL inside a text: not a row this code packed. */
    size_t kind_at = 8 + 2; /* time_us, then kind's length */
    buf[kind_at] = 0;
    CU_ASSERT_FALSE(audit_row_unpack(buf, n, &back));
}

/* ---- runner ---------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/custos-test-audit-XXXXXX");
    if (crypto_init() != CKR_OK)
        return 1;
    return mkdtemp(dir) == NULL;
}

static int teardown(void)
{
    crypto_fini();
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static const cunit_case CASES[] = {
    CASE(test_appended_records_verify_ok_with_head_sealed),
    CASE(test_record_fields_name_who_what_which_key_and_decision),
    CASE(test_two_processes_append_10000_records_and_chain_verifies),
    CASE(test_sqlite_shell_update_and_delete_are_refused_by_triggers),
    CASE(test_record_edited_with_sqlite_shell_is_named_by_verify),
    CASE(test_deleted_record_is_detected),
    CASE(test_cut_tail_is_detected_through_the_head),
    CASE(test_forged_head_in_token_is_detected),
    CASE(test_records_after_the_head_are_unsealed_not_broken),
    CASE(test_file_of_another_chain_is_a_head_mismatch),
    CASE(test_foreign_sqlite_file_is_refused),
    CASE(test_data_ops_aggregate_into_one_record_with_count),
    CASE(test_aggregates_flush_once_older_than_flush_interval),
    CASE(test_each_data_op_policy_writes_every_operation),
    CASE(test_alert_fires_above_threshold_denies_and_clears_after_window),
    CASE(test_per_key_alert_and_clear_from_another_process_lifts_deny),
    CASE(test_alert_in_log_mode_records_but_does_not_deny),
    CASE(test_syslog_mirror_sends_each_record_as_json_and_alerts_as_warnings),
    CASE(test_full_disk_gives_device_memory_and_keeps_committed_records),
    CASE(test_json_line_escapes_quotes_controls_and_bad_utf8),
    CASE(test_export_filters_by_time_and_sequence),
    CASE(test_no_key_pin_or_audit_key_in_audit_file_or_syslog),
    CASE(test_disabled_audit_writes_nothing),
    CASE(test_outbox_records_join_the_chain_before_the_next_record),
    CASE(test_outbox_drains_after_the_flush_interval_or_a_batch),
    CASE(test_outbox_left_by_a_killed_process_is_drained_by_the_next_open),
    CASE(test_outbox_rows_whose_delete_was_lost_are_not_chained_twice),
    CASE(test_malformed_outbox_row_is_recorded_not_dropped),
    CASE(test_refused_guarded_insert_leaves_no_outbox_row),
    CASE(test_two_processes_drain_each_others_outbox_rows_exactly_once),
    CASE(test_processes_opening_a_new_audit_file_together_all_get_it),
    CASE(test_destroy_and_update_commit_their_records_with_them),
    CASE(test_packed_row_round_trips_and_refuses_bad_bytes),
};

CUNIT_MAIN("audit", CASES, setup, teardown)
