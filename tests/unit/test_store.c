/* Unit tests of the token store (src/store/): file lifecycle, users, objects,
 * sealing and its AADs, finding, concurrency between connections, damaged
 * and foreign files, migrations, and that no secret reaches the disk. The
 * tests open the files with SQLite directly only to craft or inspect them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, nftw */
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>
#include "cunit_main.h"
#include "store/internal.h"
#include "store/store.h"

static char dir[64];
static const uint8_t KEK[32] = { 0x4b, 0x45, 0x4b, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
static const uint8_t MK[STORE_MK_LEN] = { 0x4d, 0x4b, 0x21, 9, 8, 7, 6, 5, 4, 3, 2, 1 };
static const uint8_t MK2[STORE_MK_LEN] = { 0x4d, 0x4b, 0x22 };
static const CK_OBJECT_CLASS SECRET = CKO_SECRET_KEY, DATA = CKO_DATA;

/* ---- helpers ------------------------------------------------------------- */

static const char *path_of(const char *name)
{
    static char p[4][128];
    static int next;
    char *r = p[next++ % 4];
    snprintf(r, sizeof(p[0]), "%s/%s", dir, name);
    return r;
}

static store_token_info info_of(const char *label, const char *serial)
{
    store_token_info i;
    memset(&i, 0, sizeof(i));
    snprintf(i.label, sizeof(i.label), "%s", label);
    snprintf(i.serial, sizeof(i.serial), "%s", serial);
    i.created = 1700000000;
    return i;
}

static store_user user_of(const char *name, CK_USER_TYPE type, const char *serial)
{
    store_user u;
    memset(&u, 0, sizeof(u));
    snprintf(u.name, sizeof(u.name), "%s", name);
    u.type = type;
    u.roles = 0x5;
    u.kdf.alg = KDF_SCRYPT;
    u.kdf.p1 = 15;
    u.kdf.p2 = 8;
    u.kdf.p3 = 1;
    memset(u.salt, 0xa5, sizeof(u.salt));
    CU_ASSERT_EQUAL(store_seal_mk(serial, name, KEK, MK, u.sealed_mk), CKR_OK);
    return u;
}

static store *make_token(const char *name, const char *serial)
{
    store *st = NULL;
    store_token_info i = info_of("token", serial);
    store_user so = user_of("so", CKU_SO, serial);
    CU_ASSERT_EQUAL_FATAL(store_create(path_of(name), &i, &so, &st), CKR_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    return st;
}

static store *reopen(const char *name)
{
    store *st = NULL;
    CU_ASSERT_EQUAL_FATAL(store_open(path_of(name), &st), CKR_OK);
    return st;
}

static store_attr plain(CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    store_attr a = { .type = type, .value = (uint8_t *)v, .len = len, .secret = false };
    return a;
}

static store_attr secret(CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    store_attr a = { .type = type, .value = (uint8_t *)v, .len = len, .secret = true };
    return a;
}

static CK_OBJECT_HANDLE insert_obj(store *st, CK_OBJECT_CLASS cls, const char *label,
                                   const char *id)
{
    CK_OBJECT_HANDLE h = 0;
    store_attr a[3] = {
        plain(CKA_CLASS, &cls, sizeof(cls)),
        plain(CKA_LABEL, label, strlen(label)),
        plain(CKA_ID, id, strlen(id)),
    };
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, a, 3, &h), CKR_OK);
    return h;
}

static const store_attr *find_attr(const store_object *o, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->attrs[i].type == type)
            return &o->attrs[i];
    return NULL;
}

static CK_ATTRIBUTE term(CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    CK_ATTRIBUTE t = { type, (void *)v, (CK_ULONG)len };
    return t;
}

/* Find and compare with the expected handles, in order. */
static void expect_find(store *st, const CK_ATTRIBUTE *t, size_t n,
                        const CK_OBJECT_HANDLE *want, size_t nwant)
{
    CK_OBJECT_HANDLE *got = (CK_OBJECT_HANDLE *)1;
    size_t count = 99;
    CU_ASSERT_EQUAL_FATAL(store_find(st, t, n, &got, &count), CKR_OK);
    CU_ASSERT_EQUAL(count, nwant);
    if (nwant == 0)
        CU_ASSERT_PTR_NULL(got);
    for (size_t i = 0; i < count && i < nwant; i++)
        CU_ASSERT_EQUAL(got[i], want[i]);
    free(got);
}

static uint8_t *slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    uint8_t *buf = NULL;
    long n;
    *len = 0;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n)
        *len = (size_t)n;
    fclose(f);
    return buf;
}

static void write_bytes(const char *p, const void *data, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static bool file_contains(const char *p, const void *needle, size_t n)
{
    size_t len;
    uint8_t *buf = slurp(p, &len);
    bool hit = buf != NULL && memmem(buf, len, needle, n) != NULL;
    free(buf);
    return hit;
}

static void raw_exec(const char *name, const char *sql)
{
    sqlite3 *db = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path_of(name), &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int64_t raw_int(const char *name, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path_of(name), &db), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/custos-test-store-XXXXXX");
    if (crypto_init() != CKR_OK)
        return 1;
    return mkdtemp(dir) == NULL;
}

static int teardown(void)
{
    crypto_fini();
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- token files ------------------------------------------------------------ */

static void test_create_then_open_round_trips_token_info(void)
{
    store *st = make_token("rt.db", "0123456789abcdef");
    store_token_info ti;
    struct stat sb;

    CU_ASSERT_EQUAL(store_token_get(st, &ti), CKR_OK);
    CU_ASSERT_STRING_EQUAL(ti.label, "token");
    CU_ASSERT_STRING_EQUAL(ti.serial, "0123456789abcdef");
    CU_ASSERT_EQUAL(ti.created, 1700000000);
    store_close(st);
    CU_ASSERT_EQUAL(stat(path_of("rt.db"), &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
    st = reopen("rt.db");
    memset(&ti, 0, sizeof(ti));
    CU_ASSERT_EQUAL(store_token_get(st, &ti), CKR_OK);
    CU_ASSERT_STRING_EQUAL(ti.label, "token");
    CU_ASSERT_STRING_EQUAL(ti.serial, "0123456789abcdef");
    store_close(st);
}

static void test_create_on_existing_path_fails_and_keeps_file(void)
{
    store *st = NULL;
    store_token_info i = info_of("x", "0000000000000001");
    store_user so = user_of("so", CKU_SO, "0000000000000001");
    size_t len;
    uint8_t *before, *after;

    write_bytes(path_of("exists.db"), "not mine", 8);
    before = slurp(path_of("exists.db"), &len);
    CU_ASSERT_EQUAL(store_create(path_of("exists.db"), &i, &so, &st), CKR_DEVICE_ERROR);
    CU_ASSERT_PTR_NULL(st);
    after = slurp(path_of("exists.db"), &len);
    CU_ASSERT_EQUAL(len, 8);
    CU_ASSERT(after != NULL && memcmp(before, after, 8) == 0);
    free(before);
    free(after);
    /* And a real token is not created over either. */
    st = make_token("twice.db", "0000000000000002");
    store_close(st);
    st = NULL;
    CU_ASSERT_EQUAL(store_create(path_of("twice.db"), &i, &so, &st), CKR_DEVICE_ERROR);
    CU_ASSERT_PTR_NULL(st);
}

static void test_create_with_bad_info_fails_without_file(void)
{
    store *st = NULL;
    store_token_info i = info_of("x", "not-hex-serial!!");
    store_user so = user_of("so", CKU_SO, "0000000000000003");

    CU_ASSERT_EQUAL(store_create(path_of("bad.db"), &i, &so, &st), CKR_ARGUMENTS_BAD);
    i = info_of("x", "0000000000000003");
    memset(i.label, 'L', sizeof(i.label)); /* no terminator within 33 bytes */
    CU_ASSERT_EQUAL(store_create(path_of("bad.db"), &i, &so, &st), CKR_ARGUMENTS_BAD);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(access(path_of("bad.db"), F_OK), -1);
}

static void test_open_missing_file_fails(void)
{
    store *st = (store *)1;
    CU_ASSERT_EQUAL(store_open(path_of("nope.db"), &st), CKR_DEVICE_ERROR);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(access(path_of("nope.db"), F_OK), -1);
}

static void test_open_random_bytes_is_not_recognized(void)
{
    uint8_t junk[8192];
    store *st = NULL;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    write_bytes(path_of("junk.db"), junk, sizeof(junk));
    CU_ASSERT_EQUAL(store_open(path_of("junk.db"), &st), CKR_TOKEN_NOT_RECOGNIZED);
    CU_ASSERT_PTR_NULL(st);
}

static void test_open_truncated_copy_is_not_recognized(void)
{
    /* Header only, then page by page: each cut loses the root page of
     * meta, token, users, objects, attrs or the search index. */
    static const size_t cuts[] = { 50, 100, 4096, 8192, 12288, 16384, 24576, 28672 };
    store *st = make_token("whole.db", "00000000000000aa");
    uint8_t *buf;
    size_t len;

    for (int i = 0; i < 20; i++)
        (void)insert_obj(st, SECRET, "some label", "id");
    store_close(st);
    buf = slurp(path_of("whole.db"), &len);
    CU_ASSERT_FATAL(buf != NULL && len > 28672);
    for (size_t i = 0; i < ARRAY_LEN(cuts); i++) {
        st = NULL;
        unlink(path_of("cut.db"));
        write_bytes(path_of("cut.db"), buf, cuts[i]);
        CU_ASSERT_EQUAL(store_open(path_of("cut.db"), &st), CKR_TOKEN_NOT_RECOGNIZED);
        CU_ASSERT_PTR_NULL(st);
    }
    /* The intact copy opens, so the cuts are what was refused. */
    unlink(path_of("cut.db"));
    write_bytes(path_of("cut.db"), buf, len);
    st = reopen("cut.db");
    store_close(st);
    free(buf);
}

static void test_open_damaged_pages_is_not_recognized(void)
{
    store *st = make_token("dmg.db", "00000000000000ab");
    uint8_t *buf, *copy;
    size_t len;

    store_close(st);
    buf = slurp(path_of("dmg.db"), &len);
    CU_ASSERT_FATAL(buf != NULL && len >= 8 * 4096);
    copy = malloc(len);
    CU_ASSERT_FATAL(copy != NULL);
    /* A fresh token is pages 1-8: schema, meta, token, users, objects,
     * sqlite_sequence, attrs, attrs_find. Scribble over one at a time; the
     * header stays valid, so only the checks on open can notice. */
    for (size_t page = 2; page <= 8; page++) {
        memcpy(copy, buf, len);
        for (size_t i = (page - 1) * 4096; i < page * 4096; i++)
            copy[i] = (uint8_t)(i * 37 + 11);
        unlink(path_of("dmg2.db"));
        write_bytes(path_of("dmg2.db"), copy, len);
        st = NULL;
        CU_ASSERT_EQUAL(store_open(path_of("dmg2.db"), &st), CKR_TOKEN_NOT_RECOGNIZED);
        CU_ASSERT_PTR_NULL(st);
        store_close(st);
    }
    free(copy);
    free(buf);
}

static void test_open_foreign_database_is_not_recognized(void)
{
    store *st = NULL;
    raw_exec("foreign.db", "CREATE TABLE songs(title TEXT)");
    CU_ASSERT_EQUAL(store_open(path_of("foreign.db"), &st), CKR_TOKEN_NOT_RECOGNIZED);
    CU_ASSERT_PTR_NULL(st);
    /* Refused, and left as it was. */
    CU_ASSERT_EQUAL(raw_int("foreign.db", "PRAGMA user_version"), 0);
    CU_ASSERT_EQUAL(raw_int("foreign.db", "SELECT count(*) FROM sqlite_master"), 1);
}

static void test_open_without_magic_is_not_recognized(void)
{
    store *st = make_token("nomagic.db", "00000000000000ac");
    store_close(st);
    st = NULL;
    raw_exec("nomagic.db", "DELETE FROM meta WHERE key = 'magic'");
    CU_ASSERT_EQUAL(store_open(path_of("nomagic.db"), &st), CKR_TOKEN_NOT_RECOGNIZED);
    CU_ASSERT_PTR_NULL(st);
}

static void test_open_newer_version_is_refused(void)
{
    store *st = make_token("newer.db", "00000000000000ad");
    store_close(st);
    st = NULL;
    raw_exec("newer.db", "PRAGMA user_version = 99");
    CU_ASSERT_EQUAL(store_open(path_of("newer.db"), &st), CKR_TOKEN_NOT_RECOGNIZED);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(raw_int("newer.db", "PRAGMA user_version"), 99);
}

static void test_open_migrates_empty_version_0_file(void)
{
    store *st = NULL;
    store_token_info ti;
    CK_OBJECT_HANDLE h = 0;
    CK_OBJECT_CLASS cls = CKO_DATA;
    store_attr a = plain(CKA_CLASS, &cls, sizeof(cls));

    write_bytes(path_of("empty.db"), "", 0);
    CU_ASSERT_EQUAL_FATAL(store_open(path_of("empty.db"), &st), CKR_OK);
    CU_ASSERT_EQUAL(raw_int("empty.db", "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CU_ASSERT_EQUAL(raw_int("empty.db", "SELECT count(*) FROM meta WHERE key = 'magic'"
                                        " AND value = CAST('custos-token' AS BLOB)"),
                    1);
    /* Migrated, but never given a token row. */
    CU_ASSERT_EQUAL(store_token_get(st, &ti), CKR_TOKEN_NOT_RECOGNIZED);
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, &a, 1, &h), CKR_OK);
    CU_ASSERT(h > 0);
    store_close(st);
    st = reopen("empty.db");
    store_close(st);
}

/* ---- users -------------------------------------------------------------------- */

static void test_user_put_get_round_trips(void)
{
    store *st = make_token("users.db", "0000000000000010");
    store_user u = user_of("alice", CKU_USER, "0000000000000010"), got;

    u.roles = 0x0a;
    u.failures = 2;
    u.flags = STORE_USER_DISABLED;
    u.kdf.alg = KDF_PBKDF2_SHA256;
    u.kdf.p1 = 600000;
    u.salt[3] = 0x33;
    CU_ASSERT_EQUAL(store_user_put(st, &u), CKR_OK);
    CU_ASSERT_EQUAL(store_user_get(st, "alice", &got), CKR_OK);
    CU_ASSERT_STRING_EQUAL(got.name, "alice");
    CU_ASSERT_EQUAL(got.type, CKU_USER);
    CU_ASSERT_EQUAL(got.roles, 0x0a);
    CU_ASSERT_EQUAL(got.kdf.alg, KDF_PBKDF2_SHA256);
    CU_ASSERT_EQUAL(got.kdf.p1, 600000);
    CU_ASSERT_EQUAL(got.kdf.p2, 8);
    CU_ASSERT_EQUAL(got.failures, 2);
    CU_ASSERT_EQUAL(got.flags, STORE_USER_DISABLED);
    CU_ASSERT(memcmp(got.salt, u.salt, sizeof(u.salt)) == 0);
    CU_ASSERT(memcmp(got.sealed_mk, u.sealed_mk, sizeof(u.sealed_mk)) == 0);
    /* Put replaces. */
    u.roles = 1;
    CU_ASSERT_EQUAL(store_user_put(st, &u), CKR_OK);
    CU_ASSERT_EQUAL(store_user_get(st, "alice", &got), CKR_OK);
    CU_ASSERT_EQUAL(got.roles, 1);
    CU_ASSERT_EQUAL(store_user_get(st, "so", &got), CKR_OK);
    CU_ASSERT_EQUAL(got.type, CKU_SO);
    store_close(st);
}

static void test_user_get_unknown_fails(void)
{
    store *st = make_token("nouser.db", "0000000000000011");
    store_user got;
    uint32_t n = 7;
    CU_ASSERT_EQUAL(store_user_get(st, "bob", &got), CKR_USER_PIN_NOT_INITIALIZED);
    CU_ASSERT_EQUAL(store_user_fail(st, "bob", &n), CKR_USER_PIN_NOT_INITIALIZED);
    CU_ASSERT_EQUAL(store_user_reset_failures(st, "bob"), CKR_USER_PIN_NOT_INITIALIZED);
    CU_ASSERT_EQUAL(store_user_get(st, "", &got), CKR_ARGUMENTS_BAD);
    store_close(st);
}

static void test_user_fail_counts_and_reset_clears(void)
{
    store *st = make_token("fail.db", "0000000000000012");
    store_user got;
    uint32_t n = 0;
    CU_ASSERT_EQUAL(store_user_fail(st, "so", &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(store_user_fail(st, "so", &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(store_user_get(st, "so", &got), CKR_OK);
    CU_ASSERT_EQUAL(got.failures, 2);
    CU_ASSERT_EQUAL(store_user_reset_failures(st, "so"), CKR_OK);
    CU_ASSERT_EQUAL(store_user_get(st, "so", &got), CKR_OK);
    CU_ASSERT_EQUAL(got.failures, 0);
    CU_ASSERT_EQUAL(store_user_reset_failures(st, "so"), CKR_OK);
    store_close(st);
}

#define FAIL_THREADS 2
#define FAILS_EACH 15

struct fail_job {
    store *st;
    uint32_t seen[FAILS_EACH];
    CK_RV rv;
};

static void *fail_worker(void *arg)
{
    struct fail_job *j = arg;
    j->rv = CKR_OK;
    for (int i = 0; i < FAILS_EACH && j->rv == CKR_OK; i++)
        j->rv = store_user_fail(j->st, "so", &j->seen[i]);
    return NULL;
}

static void test_user_fail_is_atomic_across_connections(void)
{
    store *a = make_token("race.db", "0000000000000013");
    store *b = reopen("race.db");
    struct fail_job jobs[FAIL_THREADS] = { { .st = a }, { .st = b } };
    pthread_t t[FAIL_THREADS];
    bool hit[FAIL_THREADS * FAILS_EACH + 1] = { false };
    store_user got;

    for (int i = 0; i < FAIL_THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, fail_worker, &jobs[i]), 0);
    for (int i = 0; i < FAIL_THREADS; i++)
        pthread_join(t[i], NULL);
    /* Every count from 1 to N handed out exactly once: no lost update. */
    for (int i = 0; i < FAIL_THREADS; i++) {
        CU_ASSERT_EQUAL(jobs[i].rv, CKR_OK);
        for (int k = 0; k < FAILS_EACH; k++) {
            uint32_t v = jobs[i].seen[k];
            CU_ASSERT(v >= 1 && v <= FAIL_THREADS * FAILS_EACH && !hit[v]);
            if (v >= 1 && v <= FAIL_THREADS * FAILS_EACH)
                hit[v] = true;
        }
    }
    CU_ASSERT_EQUAL(store_user_get(a, "so", &got), CKR_OK);
    CU_ASSERT_EQUAL(got.failures, FAIL_THREADS * FAILS_EACH);
    store_close(a);
    store_close(b);
}

static void test_mk_seal_round_trips_and_wrong_kek_is_pin_incorrect(void)
{
    uint8_t sealed[STORE_SEALED_MK_LEN], mk[STORE_MK_LEN], kek2[32];
    static const uint8_t zero[STORE_MK_LEN];

    memcpy(kek2, KEK, sizeof(kek2));
    kek2[31] ^= 1;
    CU_ASSERT_EQUAL(store_seal_mk("00000000000000cd", "user", KEK, MK, sealed), CKR_OK);
    CU_ASSERT(memmem(sealed, sizeof(sealed), MK, 12) == NULL);
    CU_ASSERT_EQUAL(store_unseal_mk("00000000000000cd", "user", KEK, sealed, mk), CKR_OK);
    CU_ASSERT(memcmp(mk, MK, sizeof(mk)) == 0);
    memset(mk, 0x77, sizeof(mk));
    CU_ASSERT_EQUAL(store_unseal_mk("00000000000000cd", "user", kek2, sealed, mk),
                    CKR_PIN_INCORRECT);
    CU_ASSERT(memcmp(mk, zero, sizeof(mk)) == 0);
    CU_ASSERT_EQUAL(store_unseal_mk("00000000000000cd", "so", KEK, sealed, mk),
                    CKR_PIN_INCORRECT);
    CU_ASSERT_EQUAL(store_unseal_mk("00000000000000ce", "user", KEK, sealed, mk),
                    CKR_PIN_INCORRECT);
    CU_ASSERT_EQUAL(store_seal_mk("short", "user", KEK, MK, sealed), CKR_ARGUMENTS_BAD);
}

/* ---- objects ------------------------------------------------------------------- */

static void test_object_insert_load_round_trips(void)
{
    store *st = make_token("obj.db", "0000000000000020");
    CK_OBJECT_HANDLE h = 0;
    CK_BBOOL yes = CK_TRUE;
    store_attr a[4] = {
        plain(CKA_CLASS, &DATA, sizeof(DATA)),
        plain(CKA_LABEL, "hello", 5),
        plain(CKA_TOKEN, &yes, 1),
        plain(CKA_APPLICATION, "", 0),
    };
    store_object o;
    const store_attr *x;
    uint64_t count = 9;

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, NULL, a, 4, &h), CKR_OK);
    CU_ASSERT(h != CK_INVALID_HANDLE);
    CU_ASSERT_EQUAL_FATAL(store_object_load(st, h, &o), CKR_OK);
    CU_ASSERT_EQUAL(o.handle, h);
    CU_ASSERT_EQUAL(o.n, 4);
    x = find_attr(&o, CKA_LABEL);
    CU_ASSERT_FATAL(x != NULL);
    CU_ASSERT(x->len == 5 && memcmp(x->value, "hello", 5) == 0 && !x->secret);
    x = find_attr(&o, CKA_CLASS);
    CU_ASSERT(x != NULL && x->len == sizeof(DATA) && memcmp(x->value, &DATA, sizeof(DATA)) == 0);
    x = find_attr(&o, CKA_APPLICATION);
    CU_ASSERT(x != NULL && x->len == 0 && x->value == NULL);
    store_object_release(&o);
    CU_ASSERT_PTR_NULL(o.attrs);
    CU_ASSERT_EQUAL(store_object_count(st, &count), CKR_OK);
    CU_ASSERT_EQUAL(count, 1);
    store_close(st);
}

static void test_object_without_attributes_loads_empty(void)
{
    store *st = make_token("bare.db", "0000000000000021");
    CK_OBJECT_HANDLE h = 0;
    store_object o;
    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, NULL, NULL, 0, &h), CKR_OK);
    CU_ASSERT_EQUAL(store_object_load(st, h, &o), CKR_OK);
    CU_ASSERT_EQUAL(o.n, 0);
    store_object_release(&o);
    store_close(st);
}

static void test_object_update_replaces_and_adds(void)
{
    store *st = make_token("upd.db", "0000000000000022");
    CK_OBJECT_HANDLE h = insert_obj(st, DATA, "before", "id1");
    store_attr u[2] = { plain(CKA_LABEL, "after!", 6), plain(CKA_VALUE, "v", 1) };
    store_object o;
    const store_attr *x;

    CU_ASSERT_EQUAL(store_object_update(st, NULL, h, u, 2), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_object_load(st, h, &o), CKR_OK);
    CU_ASSERT_EQUAL(o.n, 4);
    x = find_attr(&o, CKA_LABEL);
    CU_ASSERT(x != NULL && x->len == 6 && memcmp(x->value, "after!", 6) == 0);
    x = find_attr(&o, CKA_VALUE);
    CU_ASSERT(x != NULL && x->len == 1 && x->value[0] == 'v');
    x = find_attr(&o, CKA_ID);
    CU_ASSERT(x != NULL && x->len == 3);
    store_object_release(&o);
    store_close(st);
}

static void test_object_calls_on_unknown_handle_fail(void)
{
    store *st = make_token("unk.db", "0000000000000023");
    CK_OBJECT_HANDLE h = insert_obj(st, DATA, "x", "y");
    store_attr u = plain(CKA_LABEL, "z", 1);
    store_object o;

    CU_ASSERT_EQUAL(store_object_load(st, h + 100, &o), CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(o.n, 0);
    CU_ASSERT_EQUAL(store_object_load(st, CK_INVALID_HANDLE, &o), CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(store_object_update(st, NULL, h + 100, &u, 1), CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(store_object_delete(st, h + 100), CKR_OBJECT_HANDLE_INVALID);
    /* Nothing was created by the failed update. */
    CU_ASSERT_EQUAL(raw_int("unk.db", "SELECT count(*) FROM attrs"), 3);
    store_close(st);
}

static void test_object_delete_removes_object_and_attrs(void)
{
    store *st = make_token("del.db", "0000000000000024");
    CK_OBJECT_HANDLE h = insert_obj(st, DATA, "gone", "1");
    CK_OBJECT_HANDLE k = insert_obj(st, DATA, "kept", "2");
    store_object o;
    char sql[96];

    CU_ASSERT_EQUAL(store_object_delete(st, h), CKR_OK);
    CU_ASSERT_EQUAL(store_object_load(st, h, &o), CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(store_object_delete(st, h), CKR_OBJECT_HANDLE_INVALID);
    CU_ASSERT_EQUAL(store_object_load(st, k, &o), CKR_OK);
    store_object_release(&o);
    /* ON DELETE CASCADE took the attribute rows along. */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM attrs WHERE handle = %lu", h);
    CU_ASSERT_EQUAL(raw_int("del.db", sql), 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM attrs WHERE handle = %lu", k);
    CU_ASSERT_EQUAL(raw_int("del.db", sql), 3);
    store_close(st);
}

static void test_handles_are_never_reused(void)
{
    store *st = make_token("reuse.db", "0000000000000025");
    CK_OBJECT_HANDLE a = insert_obj(st, DATA, "a", "1");
    CK_OBJECT_HANDLE b = insert_obj(st, DATA, "b", "2");
    CK_OBJECT_HANDLE c, d, e;
    store_user so = user_of("so", CKU_SO, "0000000000000025");

    CU_ASSERT(b > a);
    CU_ASSERT_EQUAL(store_object_delete(st, b), CKR_OK);
    c = insert_obj(st, DATA, "c", "3");
    CU_ASSERT(c > b);
    store_close(st);
    st = reopen("reuse.db");
    CU_ASSERT_EQUAL(store_object_delete(st, c), CKR_OK);
    d = insert_obj(st, DATA, "d", "4");
    CU_ASSERT(d > c);
    CU_ASSERT_EQUAL(store_reinit(st, "again", &so), CKR_OK);
    e = insert_obj(st, DATA, "e", "5");
    CU_ASSERT(e > d);
    store_close(st);
}

static void test_secret_attr_comes_back_sealed_and_unseals(void)
{
    static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
    store *st = make_token("sec.db", "0000000000000030");
    CK_OBJECT_HANDLE h = 0;
    store_attr a[2] = { plain(CKA_CLASS, &SECRET, sizeof(SECRET)), secret(CKA_VALUE, key, 32) };
    store_object o;
    const store_attr *x;
    uint8_t out[32];

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, a, 2, &h), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_object_load(st, h, &o), CKR_OK);
    x = find_attr(&o, CKA_VALUE);
    CU_ASSERT_FATAL(x != NULL);
    CU_ASSERT(x->secret);
    CU_ASSERT_EQUAL(x->len, 32 + CRYPTO_SEAL_OVERHEAD);
    CU_ASSERT(memmem(x->value, x->len, key, 8) == NULL);
    CU_ASSERT_EQUAL(store_unseal(st, MK, h, CKA_VALUE, x->value, x->len, out), CKR_OK);
    CU_ASSERT(memcmp(out, key, 32) == 0);
    CU_ASSERT(!find_attr(&o, CKA_CLASS)->secret);
    store_object_release(&o);
    store_close(st);
}

static void test_unseal_with_wrong_place_or_key_fails(void)
{
    static const uint8_t key[16] = "sixteen byte key";
    store *st = make_token("aad.db", "0000000000000031");
    store *other = make_token("aad2.db", "0000000000000032");
    store_attr a = secret(CKA_VALUE, key, sizeof(key));
    CK_OBJECT_HANDLE h = 0;
    store_object o;
    const store_attr *x;
    uint8_t out[16], blob[64];

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, &a, 1, &h), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_object_load(st, h, &o), CKR_OK);
    x = find_attr(&o, CKA_VALUE);
    CU_ASSERT_FATAL(x != NULL && x->len == sizeof(key) + CRYPTO_SEAL_OVERHEAD);
    CU_ASSERT_EQUAL(store_unseal(st, MK, h, CKA_VALUE, x->value, x->len, out), CKR_OK);
    CU_ASSERT_EQUAL(store_unseal(st, MK, h + 1, CKA_VALUE, x->value, x->len, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(store_unseal(st, MK, h, CKA_PRIME_1, x->value, x->len, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(store_unseal(other, MK, h, CKA_VALUE, x->value, x->len, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(store_unseal(st, MK2, h, CKA_VALUE, x->value, x->len, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    memcpy(blob, x->value, x->len);
    blob[20] ^= 0x01;
    CU_ASSERT_EQUAL(store_unseal(st, MK, h, CKA_VALUE, blob, x->len, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(store_unseal(st, MK, h, CKA_VALUE, x->value, 10, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    store_object_release(&o);
    store_close(st);
    store_close(other);
}

static void test_sealed_blob_moved_in_file_is_detected(void)
{
    static const uint8_t key[16] = "another key 16b!";
    store *st = make_token("move.db", "0000000000000033");
    store_attr a = secret(CKA_VALUE, key, sizeof(key));
    store_attr b = plain(CKA_VALUE, "placeholder", 11);
    CK_OBJECT_HANDLE h1 = 0, h2 = 0;
    store_object o;
    const store_attr *x;
    uint8_t out[16];
    char sql[256];

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, &a, 1, &h1), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, NULL, &b, 1, &h2), CKR_OK);
    /* An attacker with the file copies object 1's sealed key onto object 2. */
    snprintf(sql, sizeof(sql),
             "UPDATE attrs SET value = (SELECT value FROM attrs WHERE handle = %lu"
             " AND type = %lu), sealed = 1 WHERE handle = %lu AND type = %lu",
             h1, CKA_VALUE, h2, CKA_VALUE);
    raw_exec("move.db", sql);
    CU_ASSERT_EQUAL_FATAL(store_object_load(st, h2, &o), CKR_OK);
    x = find_attr(&o, CKA_VALUE);
    CU_ASSERT_FATAL(x != NULL && x->secret);
    CU_ASSERT_EQUAL(store_unseal(st, MK, h2, CKA_VALUE, x->value, x->len, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    store_object_release(&o);
    store_close(st);
}

static void test_secret_insert_without_master_key_fails(void)
{
    store *st = make_token("nomk.db", "0000000000000034");
    store_attr a[2] = { plain(CKA_LABEL, "l", 1), secret(CKA_VALUE, "k", 1) };
    CK_OBJECT_HANDLE h = 0;
    uint64_t n = 9;
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, a, 2, &h), CKR_USER_NOT_LOGGED_IN);
    CU_ASSERT_EQUAL(store_object_count(st, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 0);
    store_close(st);
}

static void test_secret_bytes_never_reach_the_files(void)
{
    static const uint8_t key[32] = "KEYBYTES-must-never-be-on-disk!!";
    static const char label[] = "LABEL-is-stored-in-the-clear";
    store *st = make_token("leak.db", "0000000000000035");
    store_attr a[2] = { plain(CKA_LABEL, label, sizeof(label) - 1), secret(CKA_VALUE, key, 32) };
    store_attr u = secret(CKA_VALUE, key, 32);
    CK_OBJECT_HANDLE h = 0;
    static const char *const files[] = { "leak.db", "leak.db-wal", "leak.db-shm" };

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, a, 2, &h), CKR_OK);
    CU_ASSERT_EQUAL(store_object_update(st, MK, h, &u, 1), CKR_OK);
    /* While open: the commit is in the -wal. The clear label is found, so
     * the search works; no 8-byte window of the key is. */
    CU_ASSERT(file_contains(path_of("leak.db-wal"), label, sizeof(label) - 1));
    for (size_t f = 0; f < ARRAY_LEN(files); f++)
        for (size_t i = 0; i + 8 <= sizeof(key); i++)
            CU_ASSERT(!file_contains(path_of(files[f]), key + i, 8));
    CU_ASSERT(!file_contains(path_of("leak.db-wal"), MK, 12));
    store_close(st);
    /* After close the checkpoint moved everything into the main file. */
    CU_ASSERT(file_contains(path_of("leak.db"), label, sizeof(label) - 1));
    for (size_t i = 0; i + 8 <= sizeof(key); i++)
        CU_ASSERT(!file_contains(path_of("leak.db"), key + i, 8));
}

/* ---- finding -------------------------------------------------------------------- */

static void test_find_by_one_and_several_attributes(void)
{
    store *st = make_token("find.db", "0000000000000040");
    CK_OBJECT_HANDLE a = insert_obj(st, SECRET, "alpha", "\x01");
    CK_OBJECT_HANDLE b = insert_obj(st, SECRET, "beta", "\x01");
    CK_OBJECT_HANDLE c = insert_obj(st, DATA, "alpha", "\x02");
    CK_ATTRIBUTE t[3];

    t[0] = term(CKA_LABEL, "alpha", 5);
    expect_find(st, t, 1, (CK_OBJECT_HANDLE[]){ a, c }, 2);
    t[0] = term(CKA_CLASS, &SECRET, sizeof(SECRET));
    t[1] = term(CKA_ID, "\x01", 1);
    expect_find(st, t, 2, (CK_OBJECT_HANDLE[]){ a, b }, 2);
    t[1] = term(CKA_LABEL, "alpha", 5);
    expect_find(st, t, 2, (CK_OBJECT_HANDLE[]){ a }, 1);
    t[2] = term(CKA_ID, "\x01", 1);
    expect_find(st, t, 3, (CK_OBJECT_HANDLE[]){ a }, 1);
    t[2] = term(CKA_ID, "\x02", 1);
    expect_find(st, t, 3, NULL, 0);
    /* A prefix of a value is not the value. */
    t[0] = term(CKA_LABEL, "alph", 4);
    expect_find(st, t, 1, NULL, 0);
    store_close(st);
}

static void test_find_empty_template_returns_all_ascending(void)
{
    store *st = make_token("all.db", "0000000000000041");
    CK_OBJECT_HANDLE h[5];
    for (int i = 0; i < 5; i++)
        h[i] = insert_obj(st, DATA, "x", "y");
    CU_ASSERT_EQUAL(store_object_delete(st, h[2]), CKR_OK);
    expect_find(st, NULL, 0, (CK_OBJECT_HANDLE[]){ h[0], h[1], h[3], h[4] }, 4);
    store_close(st);
}

static void test_find_with_no_match_returns_nothing(void)
{
    store *st = make_token("none.db", "0000000000000042");
    CK_ATTRIBUTE t = term(CKA_LABEL, "zeta", 4);
    expect_find(st, &t, 1, NULL, 0);
    expect_find(st, NULL, 0, NULL, 0);
    (void)insert_obj(st, DATA, "eta", "1");
    expect_find(st, &t, 1, NULL, 0);
    store_close(st);
}

static void test_find_never_matches_sealed_attributes(void)
{
    static const uint8_t key[16] = "find me if u can";
    store *st = make_token("fsec.db", "0000000000000043");
    store_attr a[2] = { plain(CKA_LABEL, "k", 1), secret(CKA_VALUE, key, sizeof(key)) };
    CK_OBJECT_HANDLE h = 0;
    CK_ATTRIBUTE t[2];
    store_object o;
    const store_attr *x;

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, a, 2, &h), CKR_OK);
    t[0] = term(CKA_VALUE, key, sizeof(key));
    expect_find(st, t, 1, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(store_object_load(st, h, &o), CKR_OK);
    x = find_attr(&o, CKA_VALUE);
    CU_ASSERT_FATAL(x != NULL);
    /* Not even by the exact sealed bytes. */
    t[0] = term(CKA_VALUE, x->value, x->len);
    expect_find(st, t, 1, NULL, 0);
    t[1] = term(CKA_LABEL, "k", 1);
    expect_find(st, t, 2, NULL, 0);
    expect_find(st, &t[1], 1, (CK_OBJECT_HANDLE[]){ h }, 1);
    store_object_release(&o);
    store_close(st);
}

static void test_find_with_long_and_repeated_templates(void)
{
    store *st = make_token("long.db", "0000000000000044");
    CK_OBJECT_HANDLE a = insert_obj(st, SECRET, "gamma", "\x07");
    CK_OBJECT_HANDLE b = insert_obj(st, SECRET, "gamma", "\x08");
    CK_ATTRIBUTE t[11];
    (void)b;

    for (int i = 0; i < 10; i += 3) {
        t[i] = term(CKA_CLASS, &SECRET, sizeof(SECRET));
        if (i + 1 < 11)
            t[i + 1] = term(CKA_LABEL, "gamma", 5);
        if (i + 2 < 11)
            t[i + 2] = term(CKA_ID, "\x07", 1);
    }
    expect_find(st, t, 10, (CK_OBJECT_HANDLE[]){ a }, 1);
    t[10] = term(CKA_ID, "\x08", 1); /* the same type twice, two values */
    expect_find(st, t, 11, NULL, 0);
    t[0] = term(CKA_ID, "\x07", 1);
    t[1] = term(CKA_ID, "\x08", 1);
    expect_find(st, t, 2, NULL, 0);
    t[1] = term(CKA_ID, "\x07", 1);
    expect_find(st, t, 2, (CK_OBJECT_HANDLE[]){ a }, 1);
    store_close(st);
}

static void test_find_empty_value_matches_only_empty(void)
{
    store *st = make_token("fempty.db", "0000000000000045");
    CK_OBJECT_HANDLE e = insert_obj(st, DATA, "", "1");
    CK_ATTRIBUTE t = term(CKA_LABEL, NULL, 0);
    (void)insert_obj(st, DATA, "x", "2");
    expect_find(st, &t, 1, (CK_OBJECT_HANDLE[]){ e }, 1);
    store_close(st);
}

/* Side value j of hit i as a string ("-" when absent), for comparisons. */
static const char *side_str(const store_found *f, size_t i, size_t j, char *buf, size_t cap)
{
    const store_hit *h = &f->hits[i];
    if (h->len[j] == STORE_SIDE_ABSENT)
        return "-";
    snprintf(buf, cap, "%.*s", (int)h->len[j], (const char *)f->arena + h->off[j]);
    return buf;
}

static void test_find_with_reads_side_values_of_each_hit(void)
{
    static const uint8_t key[16] = "side value, kept";
    store *st = make_token("side.db", "0000000000000046");
    store_attr a[3] = { plain(CKA_LABEL, "s", 1), plain(CKA_APPLICATION, "app", 3),
                        secret(CKA_VALUE, key, sizeof(key)) };
    store_attr b[3] = { plain(CKA_LABEL, "s", 1), plain(CKA_APPLICATION, "", 0),
                        plain(CKA_ID, "i", 1) };
    CK_OBJECT_HANDLE ha = 0, hb = 0, hc;
    CK_ATTRIBUTE_TYPE side[2] = { CKA_APPLICATION, CKA_VALUE };
    CK_ATTRIBUTE t = term(CKA_LABEL, "s", 1);
    store_found f;
    char buf[64];

    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, a, 3, &ha), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_object_insert(st, MK, b, 3, &hb), CKR_OK);
    hc = insert_obj(st, DATA, "s", "c");
    CU_ASSERT_EQUAL_FATAL(store_find_with(st, &t, 1, side, 2, &f), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(f.count, 3);
    CU_ASSERT_EQUAL(f.hits[0].handle, ha);
    CU_ASSERT_EQUAL(f.hits[1].handle, hb);
    CU_ASSERT_EQUAL(f.hits[2].handle, hc);
    CU_ASSERT_STRING_EQUAL(side_str(&f, 0, 0, buf, sizeof(buf)), "app");
    /* A sealed value is never a side value: absent, not ciphertext. */
    CU_ASSERT_EQUAL(f.hits[0].len[1], STORE_SIDE_ABSENT);
    /* Empty is not absent. */
    CU_ASSERT_EQUAL(f.hits[1].len[0], 0);
    CU_ASSERT_EQUAL(f.hits[1].len[1], STORE_SIDE_ABSENT);
    CU_ASSERT_EQUAL(f.hits[2].len[0], STORE_SIDE_ABSENT);
    store_found_free(&f);
    CU_ASSERT_PTR_NULL(f.hits);

    /* The empty template (every object) and a long one carry them too. */
    CU_ASSERT_EQUAL_FATAL(store_find_with(st, NULL, 0, side, 1, &f), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(f.count, 3);
    CU_ASSERT_STRING_EQUAL(side_str(&f, 0, 0, buf, sizeof(buf)), "app");
    /* Not asked for: absent. */
    CU_ASSERT_EQUAL(f.hits[0].len[1], STORE_SIDE_ABSENT);
    store_found_free(&f);
    CK_ATTRIBUTE lt[10];
    for (size_t i = 0; i < 10; i++)
        lt[i] = i % 2 ? term(CKA_ID, "i", 1) : term(CKA_LABEL, "s", 1);
    CU_ASSERT_EQUAL_FATAL(store_find_with(st, lt, 10, side, 2, &f), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(f.count, 1);
    CU_ASSERT_EQUAL(f.hits[0].handle, hb);
    CU_ASSERT_EQUAL(f.hits[0].len[0], 0);
    store_found_free(&f);

    /* No hits: nothing allocated. */
    t = term(CKA_LABEL, "none", 4);
    CU_ASSERT_EQUAL_FATAL(store_find_with(st, &t, 1, side, 2, &f), CKR_OK);
    CU_ASSERT_EQUAL(f.count, 0);
    CU_ASSERT_PTR_NULL(f.hits);
    CU_ASSERT_PTR_NULL(f.arena);
    /* More side values than the store carries, or a NULL list, are refused. */
    CK_ATTRIBUTE_TYPE three[3] = { CKA_LABEL, CKA_ID, CKA_CLASS };
    CU_ASSERT_EQUAL(store_find_with(st, &t, 1, three, 3, &f), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(store_find_with(st, &t, 1, NULL, 1, &f), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(store_find_with(st, &t, 1, side, 2, NULL), CKR_ARGUMENTS_BAD);
    store_found_free(NULL);
    store_close(st);
}

static void test_mmap_reads_see_the_same_data_and_bad_sizes_are_refused(void)
{
    store *st = make_token("mmap.db", "0000000000000047");
    store *other = NULL;
    CK_OBJECT_HANDLE h[40];
    for (int i = 0; i < 40; i++)
        h[i] = insert_obj(st, DATA, i % 2 ? "odd" : "even", "m");
    CU_ASSERT_EQUAL(store_set_mmap(st, STORE_MMAP_MAX + 1), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(store_set_mmap(NULL, 0), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL_FATAL(store_set_mmap(st, STORE_MMAP_MAX), CKR_OK);
    CK_ATTRIBUTE t = term(CKA_LABEL, "odd", 3);
    CK_OBJECT_HANDLE odd[20];
    for (int i = 0; i < 20; i++)
        odd[i] = h[2 * i + 1];
    expect_find(st, &t, 1, odd, 20);
    /* A commit by another connection (no map) is seen through the map. */
    CU_ASSERT_EQUAL_FATAL(store_open(path_of("mmap.db"), &other), CKR_OK);
    CU_ASSERT_EQUAL(store_object_delete(other, h[1]), CKR_OK);
    expect_find(st, &t, 1, odd + 1, 19);
    CU_ASSERT_EQUAL(store_set_mmap(st, 0), CKR_OK);
    expect_find(st, &t, 1, odd + 1, 19);
    store_close(other);
    store_close(st);
}

/* ---- the search index (schema version 3) --------------------------------------- */

static const CK_BBOOL T = CK_TRUE, FALSE_ = CK_FALSE;

static CK_OBJECT_HANDLE insert_flags(store *st, const char *label, bool enc, bool priv)
{
    CK_OBJECT_HANDLE h = 0;
    store_attr a[5] = {
        plain(CKA_CLASS, &SECRET, sizeof(SECRET)),
        plain(CKA_LABEL, label, strlen(label)),
        plain(CKA_ENCRYPT, enc ? &T : &FALSE_, 1),
        plain(CKA_PRIVATE, priv ? &T : &FALSE_, 1),
        plain(CKA_TOKEN, &T, 1),
    };
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, a, 5, &h), CKR_OK);
    return h;
}

static bool plan_uses_index(store *st, const CK_ATTRIBUTE *t, size_t n)
{
    char plan[1024];
    CU_ASSERT_EQUAL_FATAL(store_find_plan(st, t, n, plan, sizeof(plan)), CKR_OK);
    return strstr(plan, "INDEX attrs_find") != NULL;
}

static void test_index_list_matches_its_sql_text(void)
{
    char sql[1024];
    size_t off = 0;
    for (size_t i = 0; i < ARRAY_LEN(STORE_UNINDEXED); i++)
        off += (size_t)snprintf(sql + off, sizeof(sql) - off, "%stype <> %lu", i ? " AND " : "",
                                (unsigned long)STORE_UNINDEXED[i]);
    CU_ASSERT_STRING_EQUAL(sql, STORE_UNINDEXED_SQL);
    CU_ASSERT_FALSE(store_type_indexed(CKA_ENCRYPT));
    CU_ASSERT_FALSE(store_type_indexed(CKA_TOKEN));
    CU_ASSERT_TRUE(store_type_indexed(CKA_PRIVATE));
    CU_ASSERT_TRUE(store_type_indexed(CKA_CLASS));
    CU_ASSERT_TRUE(store_type_indexed(CKA_LABEL));
}

static void test_searches_start_from_the_index_or_walk_objects_for_unindexed_terms(void)
{
    store *st = make_token("idx.db", "0000000000000050");
    CK_OBJECT_HANDLE a = insert_flags(st, "a", true, true);
    CK_OBJECT_HANDLE b = insert_flags(st, "b", false, false);
    CK_OBJECT_HANDLE c = insert_flags(st, "c", true, false);
    CK_ATTRIBUTE t[3];

    t[0] = term(CKA_LABEL, "b", 1);
    CU_ASSERT_TRUE(plan_uses_index(st, t, 1));
    expect_find(st, t, 1, &b, 1);
    t[0] = term(CKA_CLASS, &SECRET, sizeof(SECRET));
    CU_ASSERT_TRUE(plan_uses_index(st, t, 1));
    expect_find(st, t, 1, (CK_OBJECT_HANDLE[]){ a, b, c }, 3);
    /* A not-logged-in search: CKA_PRIVATE = false alone, from the index. */
    t[0] = term(CKA_PRIVATE, &FALSE_, 1);
    CU_ASSERT_TRUE(plan_uses_index(st, t, 1));
    expect_find(st, t, 1, (CK_OBJECT_HANDLE[]){ b, c }, 2);
    /* Only types the index leaves out: every object walked, each probed. */
    t[0] = term(CKA_ENCRYPT, &T, 1);
    CU_ASSERT_FALSE(plan_uses_index(st, t, 1));
    expect_find(st, t, 1, (CK_OBJECT_HANDLE[]){ a, c }, 2);
    t[1] = term(CKA_TOKEN, &T, 1);
    expect_find(st, t, 2, (CK_OBJECT_HANDLE[]){ a, c }, 2);
    t[1] = term(CKA_TOKEN, &FALSE_, 1);
    expect_find(st, t, 2, NULL, 0);
    /* With an indexed term anywhere in the template, that term leads. */
    t[0] = term(CKA_ENCRYPT, &T, 1);
    t[1] = term(CKA_TOKEN, &T, 1);
    t[2] = term(CKA_LABEL, "c", 1);
    CU_ASSERT_TRUE(plan_uses_index(st, t, 3));
    expect_find(st, t, 3, &c, 1);
    t[2] = term(CKA_PRIVATE, &T, 1);
    CU_ASSERT_TRUE(plan_uses_index(st, t, 3));
    expect_find(st, t, 3, &a, 1);
    /* Side values come with walked hits too. */
    store_found f;
    CK_ATTRIBUTE_TYPE side[1] = { CKA_LABEL };
    t[0] = term(CKA_ENCRYPT, &FALSE_, 1);
    CU_ASSERT_EQUAL_FATAL(store_find_with(st, t, 1, side, 1, &f), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(f.count, 1);
    CU_ASSERT_EQUAL(f.hits[0].handle, b);
    CU_ASSERT_EQUAL(f.hits[0].len[0], 1);
    store_found_free(&f);
    /* The guard of a guarded insert must be a type the index holds. */
    CK_OBJECT_HANDLE h = 0;
    store_attr one = plain(CKA_LABEL, "d", 1);
    CK_ATTRIBUTE guard = term(CKA_ENCRYPT, &T, 1);
    CU_ASSERT_EQUAL(store_object_insert_unless(st, NULL, &one, 1, &guard, 0, NULL, 0, NULL, &h),
                    CKR_ARGUMENTS_BAD);
    guard = term(CKA_LABEL, "a", 1);
    CU_ASSERT_EQUAL(store_object_insert_unless(st, NULL, &one, 1, &guard, 0, NULL, 0, NULL, &h),
                    CKR_ACTION_PROHIBITED);
    guard = term(CKA_LABEL, "zz", 2);
    CU_ASSERT_EQUAL(store_object_insert_unless(st, NULL, &one, 1, &guard, 0, NULL, 0, NULL, &h),
                    CKR_OK);
    store_close(st);
}

static void test_version_2_file_gets_the_version_3_index(void)
{
    store *st = make_token("v2.db", "0000000000000051");
    CK_OBJECT_HANDLE a = insert_flags(st, "a", true, false);
    CK_OBJECT_HANDLE b = insert_flags(st, "b", false, false);
    store_close(st);
    /* The file as version 2 built it: every clear attribute in the index. */
    raw_exec("v2.db", "DROP INDEX attrs_find;"
                      "CREATE INDEX attrs_find ON attrs(type, value, sealed) WHERE sealed = 0;"
                      "DROP TABLE audit_outbox;"
                      "PRAGMA user_version = 2;");
    CU_ASSERT_EQUAL(raw_int("v2.db", "SELECT count(*) FROM attrs INDEXED BY attrs_find"
                                     " WHERE type = 260 AND sealed = 0"), 2);
    st = reopen("v2.db");
    CU_ASSERT_EQUAL(raw_int("v2.db", "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CU_ASSERT_EQUAL(raw_int("v2.db", "SELECT count(*) FROM sqlite_schema WHERE name = 'attrs_find'"
                                     " AND sql LIKE '%type <> 528%'"), 1);
    CK_ATTRIBUTE t = term(CKA_LABEL, "b", 1);
    CU_ASSERT_TRUE(plan_uses_index(st, &t, 1));
    expect_find(st, &t, 1, &b, 1);
    t = term(CKA_ENCRYPT, &T, 1);
    expect_find(st, &t, 1, &a, 1);
    store_close(st);
}

/* Schema version 4: empty values are not in the index; a search whose terms
 * are all empty or unindexed walks the objects and still finds them. */
static void test_empty_values_are_found_by_walking_objects(void)
{
    store *st = make_token("emptyval.db", "0000000000000052");
    CK_OBJECT_HANDLE h[3] = { 0 };
    for (int i = 0; i < 3; i++) {
        store_attr a[3] = {
            plain(CKA_CLASS, &SECRET, sizeof(SECRET)),
            plain(CKA_LABEL, i == 2 ? "" : "k", i == 2 ? 0 : 1),
            plain(CKA_ID, i == 0 ? "\x01" : "", i == 0 ? 1 : 0),
        };
        CU_ASSERT_EQUAL(store_object_insert(st, NULL, a, 3, &h[i]), CKR_OK);
    }
    CU_ASSERT_EQUAL(raw_int("emptyval.db", "SELECT count(*) FROM attrs INDEXED BY attrs_find"
                                        " WHERE type = 258 AND value <> x'' AND sealed = 0"
                                        " AND " STORE_UNINDEXED_SQL), 1);
    CK_ATTRIBUTE t[2];
    t[0] = term(CKA_ID, "", 0);
    CU_ASSERT_FALSE(plan_uses_index(st, t, 1));
    expect_find(st, t, 1, (CK_OBJECT_HANDLE[]){ h[1], h[2] }, 2);
    t[0] = term(CKA_ID, "\x01", 1);
    CU_ASSERT_TRUE(plan_uses_index(st, t, 1));
    expect_find(st, t, 1, &h[0], 1);
    /* An empty term beside a non-empty one: the non-empty one leads. */
    t[0] = term(CKA_ID, "", 0);
    t[1] = term(CKA_LABEL, "k", 1);
    CU_ASSERT_TRUE(plan_uses_index(st, t, 2));
    expect_find(st, t, 2, &h[1], 1);
    t[1] = term(CKA_LABEL, "", 0);
    CU_ASSERT_FALSE(plan_uses_index(st, t, 2));
    expect_find(st, t, 2, &h[2], 1);
    /* A guard must be a value the index holds: an empty one is refused. */
    CK_OBJECT_HANDLE g = 0;
    store_attr one = plain(CKA_LABEL, "g", 1);
    CK_ATTRIBUTE guard = term(CKA_ID, "", 0);
    CU_ASSERT_EQUAL(store_object_insert_unless(st, NULL, &one, 1, &guard, 0, NULL, 0, NULL, &g),
                    CKR_ARGUMENTS_BAD);
    store_close(st);
}

static void test_version_3_file_gets_the_version_4_index(void)
{
    store *st = make_token("v3.db", "0000000000000053");
    CK_OBJECT_HANDLE a = insert_flags(st, "a", true, false);
    store_attr e = plain(CKA_ID, "", 0);
    CK_OBJECT_HANDLE b = 0;
    CU_ASSERT_EQUAL(store_object_insert(st, NULL, &e, 1, &b), CKR_OK);
    store_close(st);
    /* The file as version 3 built it: empty values in the index. */
    raw_exec("v3.db", "DROP INDEX attrs_find;"
                      "CREATE INDEX attrs_find ON attrs(type, value, sealed)"
                      " WHERE sealed = 0 AND " STORE_UNINDEXED_SQL ";"
                      "DROP TABLE audit_outbox;"
                      "PRAGMA user_version = 3;");
    CU_ASSERT_EQUAL(raw_int("v3.db", "SELECT count(*) FROM attrs INDEXED BY attrs_find"
                                     " WHERE type = 258 AND sealed = 0 AND " STORE_UNINDEXED_SQL),
                    1);
    st = reopen("v3.db");
    CU_ASSERT_EQUAL(raw_int("v3.db", "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CU_ASSERT_EQUAL(raw_int("v3.db", "SELECT count(*) FROM sqlite_schema WHERE name = 'attrs_find'"
                                     " AND instr(sql, 'value <> x''''') > 0"), 1);
    CK_ATTRIBUTE t = term(CKA_ID, "", 0);
    expect_find(st, &t, 1, &b, 1);
    t = term(CKA_LABEL, "a", 1);
    CU_ASSERT_TRUE(plan_uses_index(st, &t, 1));
    expect_find(st, &t, 1, &a, 1);
    store_close(st);
}

/* ---- sharing one file ------------------------------------------------------------- */

static void test_two_handles_see_each_others_commits(void)
{
    store *a = make_token("share.db", "0000000000000050");
    store *b = reopen("share.db");
    CK_OBJECT_HANDLE h;
    CK_ATTRIBUTE t = term(CKA_LABEL, "shared", 6);
    store_attr u = plain(CKA_LABEL, "renamed", 7);
    store_object o;
    uint8_t *v = NULL;
    size_t len = 0;

    h = insert_obj(a, DATA, "shared", "1");
    expect_find(b, &t, 1, (CK_OBJECT_HANDLE[]){ h }, 1);
    CU_ASSERT_EQUAL(store_object_update(b, NULL, h, &u, 1), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(store_object_load(a, h, &o), CKR_OK);
    CU_ASSERT(find_attr(&o, CKA_LABEL)->len == 7);
    store_object_release(&o);
    CU_ASSERT_EQUAL(store_meta_put(b, "policy", (const uint8_t *)"p1", 2), CKR_OK);
    CU_ASSERT_EQUAL(store_meta_get(a, "policy", &v, &len), CKR_OK);
    CU_ASSERT(len == 2 && v != NULL && memcmp(v, "p1", 2) == 0);
    free(v);
    CU_ASSERT_EQUAL(store_object_delete(a, h), CKR_OK);
    CU_ASSERT_EQUAL(store_object_load(b, h, &o), CKR_OBJECT_HANDLE_INVALID);
    store_close(a);
    store_close(b);
}

#define SHARE_THREADS 4
#define SHARE_EACH 25

struct share_job {
    store *st;
    int id;
    CK_OBJECT_HANDLE h[SHARE_EACH];
    bool ok;
};

static void *share_worker(void *arg)
{
    struct share_job *j = arg;
    char label[32];
    j->ok = true;
    for (int i = 0; i < SHARE_EACH && j->ok; i++) {
        CK_OBJECT_HANDLE *got = NULL;
        size_t count = 0;
        CK_ATTRIBUTE t;
        store_attr a;
        snprintf(label, sizeof(label), "t%d-%d", j->id, i);
        a = plain(CKA_LABEL, label, strlen(label));
        t = term(CKA_LABEL, label, strlen(label));
        j->ok = store_object_insert(j->st, NULL, &a, 1, &j->h[i]) == CKR_OK &&
                store_find(j->st, &t, 1, &got, &count) == CKR_OK && count == 1 &&
                got[0] == j->h[i];
        free(got);
    }
    return NULL;
}

static void test_one_store_is_safe_across_threads(void)
{
    store *st = make_token("threads.db", "0000000000000055");
    struct share_job jobs[SHARE_THREADS];
    pthread_t t[SHARE_THREADS];
    uint64_t n = 0;

    for (int i = 0; i < SHARE_THREADS; i++) {
        jobs[i] = (struct share_job){ .st = st, .id = i };
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, share_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < SHARE_THREADS; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT(jobs[i].ok);
    }
    CU_ASSERT_EQUAL(store_object_count(st, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, SHARE_THREADS * SHARE_EACH);
    store_close(st);
}

/* Searches run on a pool of read connections (STORE_READERS of them), with
 * more threads than readers (the rest take the main connection), while a
 * writer churns other objects and store_fork_prepare/release close and
 * reopen every connection in between. */
#define POOL_THREADS 8
#define POOL_STABLE 16
#define POOL_ROUNDS 300

struct pool_job {
    store *st;
    const CK_OBJECT_HANDLE *stable;
    int id;
    bool ok;
};

static void *pool_finder(void *arg)
{
    struct pool_job *j = arg;
    char label[32];
    j->ok = true;
    for (int i = 0; i < POOL_ROUNDS && j->ok; i++) {
        int k = (j->id * 7 + i) % POOL_STABLE;
        store_found f;
        snprintf(label, sizeof(label), "stable-%d", k);
        CK_ATTRIBUTE t[10];
        size_t n = 1;
        t[0] = term(CKA_LABEL, label, strlen(label));
        if (i % 3 == 0) {
            /* A long template: a read transaction on the reader. */
            for (; n < 10; n++)
                t[n] = term(CKA_CLASS, &DATA, sizeof(DATA));
        }
        CK_ATTRIBUTE_TYPE side[1] = { CKA_ID };
        j->ok = store_find_with(j->st, t, n, side, 1, &f) == CKR_OK && f.count == 1 &&
                f.hits[0].handle == j->stable[k] && f.hits[0].len[0] == 1 &&
                f.arena[f.hits[0].off[0]] == 's';
        store_found_free(&f);
    }
    return NULL;
}

static void test_search_pool_under_writes_and_fork_prepare(void)
{
    store *st = make_token("pool.db", "0000000000000049");
    CK_OBJECT_HANDLE stable[POOL_STABLE];
    struct pool_job jobs[POOL_THREADS];
    pthread_t t[POOL_THREADS];
    char label[32];

    for (int k = 0; k < POOL_STABLE; k++) {
        snprintf(label, sizeof(label), "stable-%d", k);
        stable[k] = insert_obj(st, DATA, label, "s");
    }
    for (int i = 0; i < POOL_THREADS; i++) {
        jobs[i] = (struct pool_job){ .st = st, .stable = stable, .id = i };
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, pool_finder, &jobs[i]), 0);
    }
    /* Meanwhile: writes on the main connection, and the fork handlers. */
    for (int i = 0; i < 60; i++) {
        CK_OBJECT_HANDLE h = insert_obj(st, DATA, "churn", "c");
        CU_ASSERT_EQUAL(store_object_delete(st, h), CKR_OK);
        if (i % 20 == 0) {
            store_fork_prepare();
            store_fork_release();
        }
    }
    for (int i = 0; i < POOL_THREADS; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT(jobs[i].ok);
    }
    /* A reader sees a commit made on the main connection at once. */
    CK_OBJECT_HANDLE h = insert_obj(st, DATA, "late", "l");
    CK_ATTRIBUTE q = term(CKA_LABEL, "late", 4);
    expect_find(st, &q, 1, &h, 1);
    store_close(st);
}

static void test_data_version_changes_after_other_commit(void)
{
    store *a = make_token("dv.db", "0000000000000051");
    store *b = reopen("dv.db");
    uint64_t v1 = 0, v2 = 0, v3 = 0;

    CU_ASSERT_EQUAL(store_data_version(a, &v1), CKR_OK);
    CU_ASSERT_EQUAL(store_data_version(a, &v2), CKR_OK);
    CU_ASSERT_EQUAL(v1, v2);
    (void)insert_obj(b, DATA, "x", "1");
    CU_ASSERT_EQUAL(store_data_version(a, &v2), CKR_OK);
    CU_ASSERT_NOT_EQUAL(v1, v2);
    /* Its own commits do not count (SQLite's PRAGMA data_version). */
    (void)insert_obj(a, DATA, "y", "2");
    CU_ASSERT_EQUAL(store_data_version(a, &v3), CKR_OK);
    CU_ASSERT_EQUAL(v2, v3);
    store_close(a);
    store_close(b);
}

static void test_reinit_clears_objects_and_users(void)
{
    store *st = make_token("reinit.db", "0000000000000052");
    store_user u = user_of("alice", CKU_USER, "0000000000000052"), got;
    store_user so = user_of("so", CKU_SO, "0000000000000052");
    store_token_info ti;
    uint64_t n = 9;

    so.roles = 0x77;
    CU_ASSERT_EQUAL(store_user_put(st, &u), CKR_OK);
    (void)insert_obj(st, DATA, "x", "1");
    (void)insert_obj(st, DATA, "y", "2");
    CU_ASSERT_EQUAL(store_reinit(st, "fresh", &so), CKR_OK);
    CU_ASSERT_EQUAL(store_object_count(st, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(raw_int("reinit.db", "SELECT count(*) FROM attrs"), 0);
    CU_ASSERT_EQUAL(store_user_get(st, "alice", &got), CKR_USER_PIN_NOT_INITIALIZED);
    CU_ASSERT_EQUAL(store_user_get(st, "so", &got), CKR_OK);
    CU_ASSERT_EQUAL(got.roles, 0x77);
    CU_ASSERT_EQUAL(store_token_get(st, &ti), CKR_OK);
    CU_ASSERT_STRING_EQUAL(ti.label, "fresh");
    CU_ASSERT_STRING_EQUAL(ti.serial, "0000000000000052");
    CU_ASSERT_EQUAL(store_reinit(st, NULL, &so), CKR_ARGUMENTS_BAD);
    store_close(st);
}

static void test_audit_head_moves_forward_and_other_commits_stay_full(void)
{
    store *st = make_token("head.db", "0000000000000048");
    uint8_t mac[32], tag[32], gm[32], gt[32];
    uint64_t seq = 0, level = 0;
    bool found = true;

    CU_ASSERT_EQUAL(store_audit_head_get(st, &seq, gm, gt, &found), CKR_OK);
    CU_ASSERT_FALSE(found);
    memset(mac, 0xA1, sizeof(mac));
    memset(tag, 0xB2, sizeof(tag));
    CU_ASSERT_EQUAL(store_audit_head_advance(st, 5, mac, tag, 0), CKR_OK);
    /* The head's own commit is not fsync'ed; the connection is back to
     * FULL for every other one. */
    CU_ASSERT_EQUAL(store_synchronous(st, &level), CKR_OK);
    CU_ASSERT_EQUAL(level, 2);
    mac[0] = 0;
    CU_ASSERT_EQUAL(store_audit_head_advance(st, 4, mac, tag, 0), CKR_OK); /* never back */
    CU_ASSERT_EQUAL(store_audit_head_get(st, &seq, gm, gt, &found), CKR_OK);
    CU_ASSERT_TRUE(found);
    CU_ASSERT_EQUAL(seq, 5);
    CU_ASSERT_EQUAL(gm[0], 0xA1);
    CU_ASSERT_EQUAL(gt[31], 0xB2);
    CU_ASSERT_EQUAL(store_synchronous(st, &level), CKR_OK);
    CU_ASSERT_EQUAL(level, 2);
    /* Another connection sees it. */
    store *other = NULL;
    CU_ASSERT_EQUAL_FATAL(store_open(path_of("head.db"), &other), CKR_OK);
    CU_ASSERT_EQUAL(store_audit_head_get(other, &seq, gm, gt, &found), CKR_OK);
    CU_ASSERT_EQUAL(seq, 5);
    store_close(other);
    store_close(st);
}

static void test_meta_round_trips_and_magic_is_protected(void)
{
    store *st = make_token("meta.db", "0000000000000053");
    uint8_t *v = (uint8_t *)1;
    size_t len = 9;

    CU_ASSERT_EQUAL(store_meta_get(st, "absent", &v, &len), CKR_OK);
    CU_ASSERT_PTR_NULL(v);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(store_meta_put(st, "k", (const uint8_t *)"\0\1\2", 3), CKR_OK);
    CU_ASSERT_EQUAL(store_meta_put(st, "k", (const uint8_t *)"\0\1\3", 3), CKR_OK);
    CU_ASSERT_EQUAL(store_meta_get(st, "k", &v, &len), CKR_OK);
    CU_ASSERT(len == 3 && v != NULL && memcmp(v, "\0\1\3", 3) == 0);
    free(v);
    CU_ASSERT_EQUAL(store_meta_put(st, "empty", NULL, 0), CKR_OK);
    CU_ASSERT_EQUAL(store_meta_get(st, "empty", &v, &len), CKR_OK);
    CU_ASSERT(v != NULL && len == 0);
    free(v);
    CU_ASSERT_EQUAL(store_meta_put(st, "magic", (const uint8_t *)"x", 1), CKR_ARGUMENTS_BAD);
    store_close(st);
    st = reopen("meta.db");
    store_close(st);
}

static void test_forget_after_fork_leaves_parent_working(void)
{
    store *st = make_token("fork.db", "0000000000000054");
    CK_OBJECT_HANDLE h = insert_obj(st, DATA, "before fork", "1");
    uint64_t n = 0;
    int status = -1, fds[2];
    char verdict = 0;
    pid_t pid;

    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        store *child = NULL;
        bool ok;
        close(fds[0]);
        store_forget_after_fork(st);
        ok = store_open(path_of("fork.db"), &child) == CKR_OK &&
             store_object_count(child, &n) == CKR_OK && n == 1 &&
             insert_obj(child, DATA, "child", "2") != 0;
        store_close(child);
        verdict = ok ? 'y' : 'n';
        if (write(fds[1], &verdict, 1) != 1)
            _exit(3);
        /* The child abandoned the parent's connection on purpose; it ends by
         * exec so that a leak checker (valgrind follows forks) does not
         * audit that. */
        execl("/bin/true", "true", (char *)NULL);
        _exit(0);
    }
    close(fds[1]);
    CU_ASSERT_EQUAL(read(fds[0], &verdict, 1), 1);
    close(fds[0]);
    CU_ASSERT_EQUAL(verdict, 'y');
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent's connection still works and sees the child's commit. */
    CU_ASSERT_EQUAL(store_object_delete(st, h), CKR_OK);
    CU_ASSERT_EQUAL(store_object_count(st, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 1);
    store_close(st);
    st = reopen("fork.db");
    store_close(st);
}

static const cunit_case CASES[] = {
    CASE(test_create_then_open_round_trips_token_info),
    CASE(test_create_on_existing_path_fails_and_keeps_file),
    CASE(test_create_with_bad_info_fails_without_file),
    CASE(test_open_missing_file_fails),
    CASE(test_open_random_bytes_is_not_recognized),
    CASE(test_open_truncated_copy_is_not_recognized),
    CASE(test_open_damaged_pages_is_not_recognized),
    CASE(test_open_foreign_database_is_not_recognized),
    CASE(test_open_without_magic_is_not_recognized),
    CASE(test_open_newer_version_is_refused),
    CASE(test_open_migrates_empty_version_0_file),
    CASE(test_user_put_get_round_trips),
    CASE(test_user_get_unknown_fails),
    CASE(test_user_fail_counts_and_reset_clears),
    CASE(test_user_fail_is_atomic_across_connections),
    CASE(test_mk_seal_round_trips_and_wrong_kek_is_pin_incorrect),
    CASE(test_object_insert_load_round_trips),
    CASE(test_object_without_attributes_loads_empty),
    CASE(test_object_update_replaces_and_adds),
    CASE(test_object_calls_on_unknown_handle_fail),
    CASE(test_object_delete_removes_object_and_attrs),
    CASE(test_handles_are_never_reused),
    CASE(test_secret_attr_comes_back_sealed_and_unseals),
    CASE(test_unseal_with_wrong_place_or_key_fails),
    CASE(test_sealed_blob_moved_in_file_is_detected),
    CASE(test_secret_insert_without_master_key_fails),
    CASE(test_secret_bytes_never_reach_the_files),
    CASE(test_find_by_one_and_several_attributes),
    CASE(test_find_empty_template_returns_all_ascending),
    CASE(test_find_with_no_match_returns_nothing),
    CASE(test_find_never_matches_sealed_attributes),
    CASE(test_find_with_long_and_repeated_templates),
    CASE(test_find_empty_value_matches_only_empty),
    CASE(test_find_with_reads_side_values_of_each_hit),
    CASE(test_index_list_matches_its_sql_text),
    CASE(test_searches_start_from_the_index_or_walk_objects_for_unindexed_terms),
    CASE(test_version_2_file_gets_the_version_3_index),
    CASE(test_empty_values_are_found_by_walking_objects),
    CASE(test_version_3_file_gets_the_version_4_index),
    CASE(test_mmap_reads_see_the_same_data_and_bad_sizes_are_refused),
    CASE(test_two_handles_see_each_others_commits),
    CASE(test_one_store_is_safe_across_threads),
    CASE(test_search_pool_under_writes_and_fork_prepare),
    CASE(test_data_version_changes_after_other_commit),
    CASE(test_reinit_clears_objects_and_users),
    CASE(test_meta_round_trips_and_magic_is_protected),
    CASE(test_audit_head_moves_forward_and_other_commits_stay_full),
    CASE(test_forget_after_fork_leaves_parent_working),
};

CUNIT_MAIN("store", CASES, setup, teardown)
