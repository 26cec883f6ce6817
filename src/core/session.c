/* Sessions (PKCS#11 3.2 sec. 5.6): the session table, open/close, and the
 * reference counting that lets one thread close a session another thread is
 * using. The table holds one reference; every call holds one while it runs;
 * the last to let go frees. Session handles are never reused in a process. */
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

bool session_is_rw(const session *s) { return (s->flags & CKF_RW_SESSION) != 0; }

login_state session_login(const session *s) { return s->tok->login; }

static void ctx_free(const mech_ops *ops, mech_ctx *c)
{
    if (c != NULL && ops != NULL && ops->free != NULL)
        ops->free(c);
}

void op_end(op *o)
{
    if (o->ctx != NULL && o->mech != NULL) {
        const mech_ops *ops = o->mech->ops;
        if (ops->reinit != NULL) {
            ctx_free(o->spare_ops, o->spare);
            o->spare = o->ctx;
            o->spare_ops = ops;
        } else {
            ctx_free(ops, o->ctx);
        }
    }
    o->ctx = NULL;
    o->mech = NULL;
    o->state = OP_IDLE;
}

void session_reset_ops(session *s)
{
    for (size_t i = 0; i < MECH_OP_COUNT; i++) {
        op_end(&s->ops[i]);
        ctx_free(s->ops[i].spare_ops, s->ops[i].spare);
        s->ops[i].spare = NULL;
        s->ops[i].spare_ops = NULL;
    }
    msg_end(&s->msg[0]);
    msg_end(&s->msg[1]);
    free(s->find.handles);
    memset(&s->find, 0, sizeof(s->find));
}

void session_destroy(session *s)
{
    session_reset_ops(s);
    crypto_md_free(s->aad_md);
    secmem_free(s->kc_key, KEY_MAX_BYTES);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void session_unref(session *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        session_destroy(s);
}

CK_RV core_open_session(CK_SLOT_ID id, CK_FLAGS flags, CK_SESSION_HANDLE_PTR out)
{
    token *t;
    CK_RV rv;

    GUARD(core_token(id, &t));
    /* sec. 5.6 C_OpenSession: CKF_SERIAL_SESSION must always be set. */
    ENSURE(flags & CKF_SERIAL_SESSION, CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    session *s = calloc(1, sizeof(*s));
    ENSURE(s != NULL, CKR_HOST_MEMORY);
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->refs, 1);
    s->slot_id = id;
    s->tok = t;
    s->flags = flags & (CKF_RW_SESSION | CKF_SERIAL_SESSION);

    pthread_mutex_lock(&t->lock);
    rv = token_open_locked(t);
    if (rv == CKR_OK && t->st == NULL)
        rv = CKR_TOKEN_NOT_RECOGNIZED; /* not initialised yet */
    if (rv == CKR_OK && t->login == LOGIN_SO && !(flags & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
    if (rv == CKR_OK) {
        t->sessions++;
        if (flags & CKF_RW_SESSION)
            t->rw_sessions++;
    }
    pthread_mutex_unlock(&t->lock);
    if (rv != CKR_OK) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return rv;
    }

    pthread_mutex_lock(&lib.lock);
    s->handle = lib.next_session++;
    session_shard *sh = session_shard_of(s->handle);
    pthread_mutex_lock(&sh->lock);
    bool ok = hmap_put(&sh->map, s->handle, s);
    pthread_mutex_unlock(&sh->lock);
    pthread_mutex_unlock(&lib.lock);
    if (!ok) {
        pthread_mutex_lock(&t->lock);
        t->sessions--;
        if (flags & CKF_RW_SESSION)
            t->rw_sessions--;
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return CKR_HOST_MEMORY;
    }
    *out = s->handle;
    return CKR_OK;
}

CK_RV core_session_acquire(CK_SESSION_HANDLE h, session **out)
{
    /* A plain read, as core_check_initialized: C_Finalize does not race
     * with other calls by the standard's own rules. */
    if (!lib.initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    session_shard *sh = session_shard_of(h);
    pthread_mutex_lock(&sh->lock);
    session *s = hmap_get(&sh->map, h);
    if (s != NULL)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&sh->lock);
    ENSURE(s != NULL, CKR_SESSION_HANDLE_INVALID);
    pthread_mutex_lock(&s->lock);
    if (s->closed) {
        pthread_mutex_unlock(&s->lock);
        session_unref(s);
        return CKR_SESSION_HANDLE_INVALID;
    }
    *out = s;
    return CKR_OK;
}

void core_session_release(session *s)
{
    pthread_mutex_unlock(&s->lock);
    session_unref(s);
}

/* Close a session already removed from the table (its table reference is
 * handed to us). */
static void close_detached(session *s)
{
    token *t = s->tok;
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    session_reset_ops(s);
    pthread_mutex_unlock(&s->lock);
    object_drop_session_objects(t, s->handle);
    audit_session_push(s);
    audit_session_closed(t, s->handle);
    pthread_mutex_lock(&t->lock);
    t->sessions--;
    if (session_is_rw(s))
        t->rw_sessions--;
    /* sec. 5.6 C_CloseSession: closing the last session logs out. */
    if (t->sessions == 0 && t->login != LOGIN_NONE)
        login_clear_locked(t);
    pthread_mutex_unlock(&t->lock);
    session_unref(s);
}

CK_RV core_close_session(CK_SESSION_HANDLE h)
{
    pthread_mutex_lock(&lib.lock);
    session *s = NULL;
    CK_RV rv = lib.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
    if (rv == CKR_OK) {
        session_shard *sh = session_shard_of(h);
        pthread_mutex_lock(&sh->lock);
        s = hmap_del(&sh->map, h);
        pthread_mutex_unlock(&sh->lock);
    }
    pthread_mutex_unlock(&lib.lock);
    GUARD(rv);
    ENSURE(s != NULL, CKR_SESSION_HANDLE_INVALID);
    close_detached(s);
    return CKR_OK;
}

CK_RV core_close_all_sessions(CK_SLOT_ID id)
{
    token *t;
    GUARD(core_token(id, &t));
    for (;;) {
        session *s = NULL;
        pthread_mutex_lock(&lib.lock);
        for (size_t i = 0; i < SESSION_SHARDS && s == NULL; i++) {
            session_shard *sh = &lib.shards[i];
            size_t pos = 0;
            uint64_t key;
            void *val;
            pthread_mutex_lock(&sh->lock);
            while (hmap_next(&sh->map, &pos, &key, &val)) {
                if (((session *)val)->slot_id == id) {
                    s = hmap_del(&sh->map, key);
                    break;
                }
            }
            pthread_mutex_unlock(&sh->lock);
        }
        pthread_mutex_unlock(&lib.lock);
        if (s == NULL)
            break;
        close_detached(s);
    }
    return CKR_OK;
}

CK_RV core_session_info(session *s, CK_SESSION_INFO_PTR info)
{
    bool rw = session_is_rw(s);
    login_state l = s->tok->login;
    info->slotID = s->slot_id;
    info->flags = s->flags;
    info->ulDeviceError = 0;
    if (l == LOGIN_SO)
        info->state = CKS_RW_SO_FUNCTIONS;
    else if (l == LOGIN_USER)
        info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    else
        info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
    return CKR_OK;
}
