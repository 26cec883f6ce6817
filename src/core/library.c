/* Library state: C_Initialize / C_Finalize, the configuration, and what a
 * child process inherits after fork (nothing usable: it must call
 * C_Initialize again, as PKCS#11 3.2 sec. 5.1 "fork" and nginx expect). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

library lib = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The shards' locks (a static initializer for an array would name each). */
static void shards_init(void)
{
    for (size_t i = 0; i < SESSION_SHARDS; i++) {
        pthread_mutex_init(&lib.shards[i].lock, NULL);
        hmap_init(&lib.shards[i].map);
    }
}
static pthread_once_t shards_once = PTHREAD_ONCE_INIT;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Hold lib.lock across fork so the child's copy of the tables is
 * consistent, then give the child a library that is simply not
 * initialised. The parent's store connections, sessions and keys are
 * forgotten in the child, not closed: SQLite connections must not cross
 * fork, and key pages are MADV_WIPEONFORK anyway. */
static void before_fork(void)
{
    pthread_mutex_lock(&lib.lock);
    for (size_t i = 0; i < SESSION_SHARDS; i++)
        pthread_mutex_lock(&lib.shards[i].lock);
    audit_fork_prepare(); /* audit files before token stores (audit.h) */
    store_fork_prepare();
}

static void after_fork_parent(void)
{
    store_fork_release();
    audit_fork_release();
    for (size_t i = 0; i < SESSION_SHARDS; i++)
        pthread_mutex_unlock(&lib.shards[i].lock);
    pthread_mutex_unlock(&lib.lock);
}

/* What a child inherited, kept reachable (never used again): its locks may
 * have been held by threads that do not exist in the child, so it is not
 * safe to tear down, and it holds no connection and no key (see above). */
static struct {
    token *slots[CUSTOS_MAX_SLOTS];
    hmap sessions[SESSION_SHARDS];
} inherited[4];
static unsigned n_inherited;

static void after_fork_child(void)
{
    store_fork_release();
    audit_fork_release();
    pthread_mutex_init(&lib.lock, NULL);
    for (size_t i = 0; i < SESSION_SHARDS; i++)
        pthread_mutex_init(&lib.shards[i].lock, NULL);
    if (!lib.initialized)
        return;
    for (size_t i = 0; i < CUSTOS_MAX_SLOTS; i++)
        if (lib.slots[i] != NULL)
            audit_forget_after_fork(lib.slots[i]->audit);
    if (n_inherited < ARRAY_LEN(inherited)) {
        memcpy(inherited[n_inherited].slots, lib.slots, sizeof(lib.slots));
        for (size_t i = 0; i < SESSION_SHARDS; i++)
            inherited[n_inherited].sessions[i] = lib.shards[i].map;
        n_inherited++;
    }
    memset(lib.slots, 0, sizeof(lib.slots));
    for (size_t i = 0; i < SESSION_SHARDS; i++)
        hmap_init(&lib.shards[i].map);
    crypto_forget_after_fork();
    lib.initialized = false;
}

static void register_atfork(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

static CK_RV check_args(const CK_C_INITIALIZE_ARGS *a)
{
    if (a == NULL)
        return CKR_OK;
    /* sec. 5.4 C_Initialize: pReserved must be NULL; the four mutex
     * functions are all supplied or none. Custos always uses native
     * locks, which CKF_OS_LOCKING_OK permits and which are also correct
     * when an application supplies its own functions. */
    ENSURE(a->pReserved == NULL, CKR_ARGUMENTS_BAD);
    int given = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) +
                (a->LockMutex != NULL) + (a->UnlockMutex != NULL);
    ENSURE(given == 0 || given == 4, CKR_ARGUMENTS_BAD);
    return CKR_OK;
}

static CK_RV ensure_dir(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    ENSURE(n > 0 && n < sizeof(tmp), CKR_GENERAL_ERROR);
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return CKR_DEVICE_ERROR;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return CKR_DEVICE_ERROR;
    return CKR_OK;
}

CK_RV core_initialize(CK_C_INITIALIZE_ARGS_PTR args)
{
    CK_RV rv;
    char err[256];

    GUARD(check_args(args));
    pthread_once(&atfork_once, register_atfork);
    pthread_once(&shards_once, shards_init);
    pthread_mutex_lock(&lib.lock);
    ENSURE_OUT(!lib.initialized, CKR_CRYPTOKI_ALREADY_INITIALIZED);
    rv = config_load(&lib.cfg, err, sizeof(err));
    if (rv != CKR_OK) {
        /* The one place the module speaks: a broken configuration file
         * must be visible to whoever runs the client. Never a secret. */
        fprintf(stderr, "custos: %s\n", err);
        goto out;
    }
    GUARD_OUT(ensure_dir(lib.cfg.store_path));
    GUARD_OUT(crypto_init());
    for (size_t i = 0; i < SESSION_SHARDS; i++)
        hmap_init(&lib.shards[i].map);
    memset(lib.slots, 0, sizeof(lib.slots));
    lib.next_session = 1;
    lib.pid = getpid();
    lib.initialized = true;
out:
    pthread_mutex_unlock(&lib.lock);
    if (rv == CKR_OK)
        rv = core_slots_refresh();
    return rv;
}

CK_RV core_finalize(void)
{
    pthread_mutex_lock(&lib.lock);
    if (!lib.initialized) {
        pthread_mutex_unlock(&lib.lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    lib.initialized = false;
    for (size_t i = 0; i < SESSION_SHARDS; i++) {
        session_shard *sh = &lib.shards[i];
        size_t pos = 0;
        uint64_t key;
        void *val;
        pthread_mutex_lock(&sh->lock);
        while (hmap_next(&sh->map, &pos, &key, &val)) {
            session *s = val;
            object_drop_session_objects(s->tok, s->handle);
            audit_session_push(s);
            audit_session_closed(s->tok, s->handle);
            session_destroy(s);
        }
        hmap_free(&sh->map);
        pthread_mutex_unlock(&sh->lock);
    }
    for (size_t i = 0; i < CUSTOS_MAX_SLOTS; i++) {
        token_free(lib.slots[i]);
        lib.slots[i] = NULL;
    }
    crypto_fini();
    secmem_trim();
    pthread_mutex_unlock(&lib.lock);
    return CKR_OK;
}

CK_RV core_check_initialized(void)
{
    /* A plain read: initialisation is not racing with other calls by the
     * standard's own rules (C_Initialize/C_Finalize are not called while
     * other threads use the library). */
    return lib.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
}

const custos_config *core_config(void) { return &lib.cfg; }

void pad_field(CK_UTF8CHAR *dst, size_t width, const char *src)
{
    size_t n = strlen(src);
    if (n > width)
        n = width;
    memset(dst, ' ', width);
    memcpy(dst, src, n);
}
