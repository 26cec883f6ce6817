/* Concurrency: many threads, each with its own session, on one shared key;
 * simultaneous C_Login on two sessions (SoftHSM2 crashes there); threads
 * creating, destroying and finding session objects at once; and a library
 * initialised with CKF_OS_LOCKING_OK. Worker threads make no CUnit calls:
 * they record the first failure and the main thread asserts.
 * PKCS#11 3.2 sec. 5.1.1 (threads), 5.4 (C_Initialize locking). */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef struct worker {
    pthread_t th;
    unsigned id;
    unsigned iterations;
    CK_SLOT_ID slot;
    CK_OBJECT_HANDLE key;
    pthread_barrier_t *start;
    const char *label;
    CK_RV rv;          /* first failure, CKR_OK if none */
    const char *where; /* which call failed */
    CK_RV login_rv;
    unsigned done;
} worker;

static void fail(worker *w, CK_RV rv, const char *where)
{
    if (w->rv == CKR_OK) {
        w->rv = rv;
        w->where = where;
    }
}

static void report(const worker *w, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s: thread %u failed in %s with %s", what, w[i].id,
                 w[i].where ? w[i].where : "-", h_rv_name(w[i].rv));
        CHECK(w[i].rv == CKR_OK, msg);
    }
}

static void *gcm_worker(void *arg)
{
    worker *w = arg;
    CK_SESSION_HANDLE s;
    CK_RV rv = F->C_OpenSession(w->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        fail(w, rv, "C_OpenSession");
        return NULL;
    }
    if (w->start)
        pthread_barrier_wait(w->start);
    for (unsigned i = 0; i < w->iterations; i++) {
        /* IV = thread id || counter: unique across the whole test. */
        rv = h_gcm_round_trip(s, w->key, (uint32_t)(w->id << 20 | i));
        if (rv != CKR_OK) {
            fail(w, rv, "GCM round trip");
            break;
        }
        w->done++;
    }
    rv = F->C_CloseSession(s);
    if (rv != CKR_OK)
        fail(w, rv, "C_CloseSession");
    return NULL;
}

static void run_gcm_workers(unsigned nthreads, unsigned iterations, const char *what)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    worker w[8];
    pthread_barrier_t start;
    REQUIRE(nthreads <= NELEM(w), "at most 8 threads");
    pthread_barrier_init(&start, NULL, nthreads);
    memset(w, 0, sizeof(w));
    for (unsigned i = 0; i < nthreads; i++) {
        w[i].id = i + 1;
        w[i].iterations = iterations;
        w[i].slot = H.slot;
        w[i].key = k;
        w[i].start = &start;
        REQUIRE(pthread_create(&w[i].th, NULL, gcm_worker, &w[i]) == 0, "pthread_create");
    }
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(w[i].th, NULL);
    pthread_barrier_destroy(&start);
    report(w, nthreads, what);
    unsigned total = 0;
    for (unsigned i = 0; i < nthreads; i++)
        total += w[i].done;
    CHECK(total == nthreads * iterations, "every round trip completed");
    CK_SESSION_INFO si;
    RV_EQ(F->C_GetSessionInfo(s, &si), CKR_OK, "main session still valid");
    CHECK(si.state == CKS_RW_USER_FUNCTIONS, "still logged in after the workers closed theirs");
}

static void test_eight_threads_gcm_round_trips_on_one_key(void)
{
    run_gcm_workers(8, 2000, "8 x 2,000 GCM round trips");
}

static void *login_worker(void *arg)
{
    worker *w = arg;
    CK_SESSION_HANDLE s = (CK_SESSION_HANDLE)w->key; /* session made by main */
    pthread_barrier_wait(w->start);
    w->login_rv = F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)H.user_pin, strlen(H.user_pin));
    return NULL;
}

static void test_two_threads_login_at_once(void)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    int both_ok_or_already = 1, one_ok = 1, logged_in = 1;
    for (int round = 0; round < 20; round++) {
        worker w[2];
        memset(w, 0, sizeof(w));
        for (int i = 0; i < 2; i++) {
            w[i].id = (unsigned)i + 1;
            w[i].key = h_open(H.slot, 1);
            w[i].start = &start;
            REQUIRE(pthread_create(&w[i].th, NULL, login_worker, &w[i]) == 0, "pthread_create");
        }
        for (int i = 0; i < 2; i++)
            pthread_join(w[i].th, NULL);
        for (int i = 0; i < 2; i++)
            both_ok_or_already &= w[i].login_rv == CKR_OK ||
                                  w[i].login_rv == CKR_USER_ALREADY_LOGGED_IN;
        one_ok &= w[0].login_rv == CKR_OK || w[1].login_rv == CKR_OK;
        CK_SESSION_INFO si;
        if (F->C_GetSessionInfo((CK_SESSION_HANDLE)w[0].key, &si) != CKR_OK ||
            si.state != CKS_RW_USER_FUNCTIONS)
            logged_in = 0;
        (void)F->C_Logout((CK_SESSION_HANDLE)w[0].key);
        (void)F->C_CloseSession((CK_SESSION_HANDLE)w[0].key);
        (void)F->C_CloseSession((CK_SESSION_HANDLE)w[1].key);
    }
    pthread_barrier_destroy(&start);
    CHECK(both_ok_or_already, "each concurrent C_Login gives OK or USER_ALREADY_LOGGED_IN");
    CHECK(one_ok, "at least one concurrent C_Login succeeds");
    CHECK(logged_in, "the sessions end up logged in");
}

static void *object_creator(void *arg)
{
    worker *w = arg;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE made[64];
    unsigned live = 0;
    char label[48];
    snprintf(label, sizeof(label), "%s-%u", w->label, w->id);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, label, strlen(label) } };
    CK_RV rv = F->C_OpenSession(w->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        fail(w, rv, "C_OpenSession");
        return NULL;
    }
    pthread_barrier_wait(w->start);
    for (unsigned i = 0; i < w->iterations; i++) {
        CK_OBJECT_HANDLE o;
        rv = F->C_CreateObject(s, t, NELEM(t), &o);
        if (rv != CKR_OK) {
            fail(w, rv, "C_CreateObject");
            break;
        }
        if (live < NELEM(made))
            made[live++] = o;
        /* Destroy every other one: half remain at the end. */
        if (i % 2 == 1 && live > 0) {
            rv = F->C_DestroyObject(s, made[--live]);
            if (rv != CKR_OK) {
                fail(w, rv, "C_DestroyObject");
                break;
            }
        }
    }
    /* The session stays open: the main thread counts what remains. */
    w->key = s;
    return NULL;
}

static void *object_finder(void *arg)
{
    worker *w = arg;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
    CK_RV rv = F->C_OpenSession(w->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        fail(w, rv, "C_OpenSession");
        return NULL;
    }
    pthread_barrier_wait(w->start);
    for (unsigned i = 0; i < w->iterations && w->rv == CKR_OK; i++) {
        if ((rv = F->C_FindObjectsInit(s, t, NELEM(t))) != CKR_OK) {
            fail(w, rv, "C_FindObjectsInit");
            break;
        }
        CK_OBJECT_HANDLE h[16];
        CK_ULONG n = 0;
        do {
            if ((rv = F->C_FindObjects(s, h, NELEM(h), &n)) != CKR_OK) {
                fail(w, rv, "C_FindObjects");
                break;
            }
            for (CK_ULONG j = 0; j < n; j++) {
                CK_OBJECT_CLASS c;
                CK_ATTRIBUTE a = { CKA_CLASS, &c, sizeof(c) };
                /* Another thread may have destroyed it since. */
                rv = F->C_GetAttributeValue(s, h[j], &a, 1);
                if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
                    fail(w, rv, "C_GetAttributeValue on a found object");
                else if (rv == CKR_OK && c != CKO_DATA)
                    fail(w, CKR_GENERAL_ERROR, "found object is not CKO_DATA");
            }
        } while (n > 0);
        if ((rv = F->C_FindObjectsFinal(s)) != CKR_OK)
            fail(w, rv, "C_FindObjectsFinal");
    }
    (void)F->C_CloseSession(s);
    return NULL;
}

static void test_threads_create_destroy_and_find_objects(void)
{
    enum { CREATORS = 4, FINDERS = 2, PER = 200 };
    worker w[CREATORS + FINDERS];
    pthread_barrier_t start;
    char base[32], r[9];
    h_random_hex(r, 4);
    snprintf(base, sizeof(base), "api-thr-%s", r);
    memset(w, 0, sizeof(w));
    pthread_barrier_init(&start, NULL, CREATORS + FINDERS);
    for (unsigned i = 0; i < CREATORS + FINDERS; i++) {
        w[i].id = i + 1;
        w[i].slot = H.slot;
        w[i].start = &start;
        w[i].label = base;
        w[i].iterations = i < CREATORS ? PER : 30;
        REQUIRE(pthread_create(&w[i].th, NULL, i < CREATORS ? object_creator : object_finder,
                               &w[i]) == 0,
                "pthread_create");
    }
    for (unsigned i = 0; i < CREATORS + FINDERS; i++)
        pthread_join(w[i].th, NULL);
    pthread_barrier_destroy(&start);
    report(w, CREATORS + FINDERS, "objects in threads");

    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    for (unsigned i = 0; i < CREATORS; i++) {
        char label[48];
        snprintf(label, sizeof(label), "%s-%u", base, w[i].id);
        CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
        CHECK(h_count(s, &byl, 1) == PER / 2, "each creator's surviving objects are all found");
    }
    for (unsigned i = 0; i < CREATORS; i++)
        if (w[i].key != 0)
            RV_EQ(F->C_CloseSession((CK_SESSION_HANDLE)w[i].key), CKR_OK,
                  "close a creator's session");
    for (unsigned i = 0; i < CREATORS; i++) {
        char label[48];
        snprintf(label, sizeof(label), "%s-%u", base, w[i].id);
        CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
        CHECK(h_count(s, &byl, 1) == 0, "session objects gone with their session");
    }
}

static void test_os_locking_initialize_with_threads(void)
{
    CK_C_INITIALIZE_ARGS a;
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    RV_REQ(F->C_Initialize(&a), CKR_OK, "C_Initialize(CKF_OS_LOCKING_OK)");
    run_gcm_workers(4, 200, "4 x 200 GCM round trips after CKF_OS_LOCKING_OK");
}

static const h_case CASES[] = {
    H_CASE(test_eight_threads_gcm_round_trips_on_one_key),
    H_CASE(test_two_threads_login_at_once),
    H_CASE(test_threads_create_destroy_and_find_objects),
    H_CASE(test_os_locking_initialize_with_threads),
};

int t_threads_register(void)
{
    return h_add_suite("threads", CASES, NELEM(CASES));
}
