/* Objects (PKCS#11 3.2 sec. 5.7): the in-memory object, the cache of token
 * objects loaded lazily from the store, session objects, and the object
 * management calls. An object's attributes are read and written only with
 * its token's lock held; key bytes leave an object only as a copy for the
 * duration of one call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

static CK_ULONG ulong_or(const attr_list *l, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt)
{
    CK_ULONG v;
    return attr_get_ulong(l, type, &v) ? v : dflt;
}

/* Make an object around attrs (ownership moves in). */
static object *object_wrap(attr_list *attrs)
{
    object *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    atomic_init(&o->refs, 1);
    o->attrs = *attrs;
    attr_list_init(attrs);
    o->cls = ulong_or(&o->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    o->kt = ulong_or(&o->attrs, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION);
    o->is_token = attr_bool(&o->attrs, CKA_TOKEN, false);
    o->is_private = attr_bool(&o->attrs, CKA_PRIVATE, false);
    const attr *acl = attr_find(&o->attrs, CKA_CUSTOS_ALLOWED_USERS);
    if (acl != NULL && acl->len > 0 && (o->acl = strndup((const char *)acl->value, acl->len)) == NULL) {
        attr_list_free(&o->attrs);
        free(o);
        return NULL;
    }
    return o;
}

void object_unref(object *o)
{
    if (o != NULL && atomic_fetch_sub(&o->refs, 1) == 1) {
        attr_list_free(&o->attrs);
        free(o->aud);
        free(o->acl);
        free(o);
    }
}

/* Milliseconds on the coarse monotonic clock (no system call). */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* How long a data operation may use a cached key before asking the store
 * whether another process changed anything (docs/architecture.md). */
#define HOT_RECHECK_MS 50

bool object_cache_fresh(const token *t)
{
    return now_ms() - t->dv_checked_ms < HOT_RECHECK_MS;
}

void object_cache_flush_locked(token *t)
{
    atomic_fetch_add(&t->gen, 1);
    size_t pos = 0;
    uint64_t key;
    void *val;
    while (hmap_next(&t->cache, &pos, &key, &val))
        object_unref(val);
    hmap_free(&t->cache);
}

static bool visible(const token *t, const object *o) { return role_sees(t, o); }

/* Open sealed attributes of o while the master key is at hand. */
static CK_RV open_sealed_locked(token *t, object *o)
{
    for (size_t i = 0; i < o->attrs.n; i++) {
        attr *a = &o->attrs.v[i];
        if (!(a->flags & ATTR_SEALED))
            continue;
        ENSURE(t->mk != NULL, CKR_USER_NOT_LOGGED_IN);
        ENSURE(a->len >= CRYPTO_SEAL_OVERHEAD, CKR_DEVICE_ERROR);
        size_t n = a->len - CRYPTO_SEAL_OVERHEAD;
        uint8_t *plain = secmem_alloc(n);
        ENSURE(plain != NULL, CKR_HOST_MEMORY);
        CK_RV rv = store_unseal(t->st, t->mk, o->handle, a->type, a->value, a->len, plain);
        if (rv != CKR_OK) {
            secmem_free(plain, n);
            /* A value that does not authenticate was moved or edited in
             * the file: the token is damaged for this object. */
            return rv == CKR_ENCRYPTED_DATA_INVALID ? CKR_DEVICE_ERROR : rv;
        }
        free(a->value);
        a->value = plain;
        a->len = n;
        a->flags = ATTR_SECRET;
    }
    return CKR_OK;
}

/* Load a token object into the cache. Called with t->lock held. */
static CK_RV load_locked_mode(token *t, CK_OBJECT_HANDLE h, bool hot, object **out)
{
    uint64_t ver, now = now_ms();
    if (!hot || now - t->dv_checked_ms >= HOT_RECHECK_MS) {
        GUARD(store_data_version(t->st, &ver));
        t->dv_checked_ms = now;
        if (ver != t->cache_version) {
            /* Another process committed: what we cached may be stale. */
            object_cache_flush_locked(t);
            t->cache_version = ver;
        }
    }
    object *o = hmap_get(&t->cache, h);
    if (o != NULL) {
        *out = o;
        return CKR_OK;
    }
    store_object so;
    GUARD(store_object_load(t->st, h, &so));
    attr_list l;
    attr_list_init(&l);
    CK_RV rv = CKR_OK;
    for (size_t i = 0; i < so.n && rv == CKR_OK; i++)
        rv = attr_set(&l, so.attrs[i].type, so.attrs[i].value, so.attrs[i].len,
                      so.attrs[i].secret ? ATTR_SEALED : 0);
    store_object_release(&so);
    if (rv == CKR_OK && (o = object_wrap(&l)) == NULL)
        rv = CKR_HOST_MEMORY;
    attr_list_free(&l);
    GUARD(rv);
    o->handle = h;
    o->is_token = true;
    if (t->mk != NULL && (rv = open_sealed_locked(t, o)) != CKR_OK) {
        object_unref(o);
        return rv;
    }
    if (!hmap_put(&t->cache, h, o)) {
        object_unref(o);
        return CKR_HOST_MEMORY;
    }
    *out = o;
    return CKR_OK;
}

static CK_RV load_locked(token *t, CK_OBJECT_HANDLE h, object **out)
{
    return load_locked_mode(t, h, false, out);
}

CK_RV object_load_row_locked(token *t, CK_OBJECT_HANDLE row, object **out)
{
    object *o;
    GUARD(load_locked(t, row, &o));
    atomic_fetch_add(&o->refs, 1);
    *out = o;
    return CKR_OK;
}

CK_RV object_open_locked(token *t, object *o) { return open_sealed_locked(t, o); }

CK_OBJECT_HANDLE object_client_handle(const token *t, CK_OBJECT_HANDLE row, bool is_private)
{
    if (!is_private)
        return row;
    return row | (((CK_OBJECT_HANDLE)(t->login_epoch % 0xFFFFu) + 1) << 32);
}

CK_RV object_get(session *s, CK_OBJECT_HANDLE h, object **out)
{
    return object_get_mode(s, h, false, out);
}

CK_RV object_get_mode(session *s, CK_OBJECT_HANDLE h, bool hot, object **out)
{
    token *t = s->tok;
    object *o = NULL;
    CK_RV rv = CKR_OK;

    ENSURE(h != CK_INVALID_HANDLE, CKR_OBJECT_HANDLE_INVALID);
    pthread_mutex_lock(&t->lock);
    if (h & SESSION_OBJECT_BIT) {
        o = hmap_get(&t->sobjs, h);
    } else if (token_ready(t) && (h & HANDLE_ROW_MASK) != 0) {
        rv = load_locked_mode(t, h & HANDLE_ROW_MASK, hot, &o);
        /* The tag must be the current login's (private) or none (public). */
        if (rv == CKR_OK && object_client_handle(t, o->handle, o->is_private) != h)
            o = NULL;
    }
    if (rv == CKR_OBJECT_HANDLE_INVALID || (rv == CKR_OK && (o == NULL || !visible(t, o))))
        rv = CKR_OBJECT_HANDLE_INVALID;
    if (rv == CKR_OK)
        atomic_fetch_add(&o->refs, 1);
    pthread_mutex_unlock(&t->lock);
    GUARD(rv);
    *out = o;
    return CKR_OK;
}

CK_RV object_key_copy_locked(token *t, object *o, uint8_t *buf, size_t cap, size_t *len)
{
    GUARD(open_sealed_locked(t, o));
    const attr *a = attr_find(&o->attrs, CKA_VALUE);
    ENSURE(a != NULL && (a->flags & ATTR_SECRET), CKR_KEY_TYPE_INCONSISTENT);
    ENSURE(a->len <= cap, CKR_KEY_SIZE_RANGE);
    memcpy(buf, a->value, a->len);
    *len = a->len;
    return CKR_OK;
}

CK_RV object_key_copy(token *t, object *o, uint8_t *buf, size_t cap, size_t *len)
{
    pthread_mutex_lock(&t->lock);
    CK_RV rv = object_key_copy_locked(t, o, buf, cap, len);
    pthread_mutex_unlock(&t->lock);
    return rv;
}

bool object_bool(token *t, object *o, CK_ATTRIBUTE_TYPE type, bool dflt)
{
    pthread_mutex_lock(&t->lock);
    bool v = attr_bool(&o->attrs, type, dflt);
    pthread_mutex_unlock(&t->lock);
    return v;
}

CK_RV object_with_attrs(token *t, object *o, CK_RV (*fn)(attr_list *l, void *arg), void *arg)
{
    pthread_mutex_lock(&t->lock);
    CK_RV rv = fn(&o->attrs, arg);
    pthread_mutex_unlock(&t->lock);
    return rv;
}

/* Who may create or change an object of this kind in this session
 * (sec. 5.7 C_CreateObject; sec. 4.4; docs/roles.md). */
static CK_RV may_write(session *s, bool is_token, bool is_private)
{
    token *t = s->tok;
    if (is_token)
        ENSURE(session_is_rw(s), CKR_SESSION_READ_ONLY);
    if (is_private)
        ENSURE(t->login == LOGIN_USER || (t->roles & CUSTOS_ROLE_ADMIN), CKR_USER_NOT_LOGGED_IN);
    if (is_token)
        GUARD(role_check(t, ACT_TOKEN_WRITE));
    return CKR_OK;
}

CK_RV object_add(session *s, attr_list *attrs, CK_OBJECT_HANDLE *out)
{
    return object_add_guarded(s, attrs, NULL, 0, NULL, 0, out);
}

CK_RV object_add_guarded(session *s, attr_list *attrs, const CK_ATTRIBUTE *unless,
                         CK_OBJECT_HANDLE upd_row, const store_attr *upd, size_t upd_n,
                         CK_OBJECT_HANDLE *out)
{
    GUARD(may_write(s, attr_bool(attrs, CKA_TOKEN, false), attr_bool(attrs, CKA_PRIVATE, false)));
    return object_add_internal(s, attrs, unless, upd_row, upd, upd_n, out);
}

CK_RV object_add_internal(session *s, attr_list *attrs, const CK_ATTRIBUTE *unless,
                          CK_OBJECT_HANDLE upd_row, const store_attr *upd, size_t upd_n,
                          CK_OBJECT_HANDLE *out)
{
    token *t = s->tok;
    CK_RV rv = CKR_OK;
    store_attr *sa = NULL;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;

    bool is_token = attr_bool(attrs, CKA_TOKEN, false);
    /* sec. 4.4.1 CKA_UNIQUE_ID: set by the token, once, for every new
     * object (copies included): 128 random bits in hex. */
    uint8_t rnd[16];
    char uid[33];
    /* One random generator call per sixteen objects: it was a tenth of a
     * session key's generation (OpenSSL 3.0's DRBG asks getpid() and its
     * parameters by name on every call). */
    if (s->uid_left < sizeof(rnd)) {
        GUARD(crypto_random(s->uid_pool, sizeof(s->uid_pool)));
        s->uid_left = sizeof(s->uid_pool);
    }
    s->uid_left -= sizeof(rnd);
    memcpy(rnd, s->uid_pool + s->uid_left, sizeof(rnd));
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(rnd); i++) {
        uid[2 * i] = hex[rnd[i] >> 4];
        uid[2 * i + 1] = hex[rnd[i] & 15];
    }
    uid[32] = '\0';
    GUARD(attr_set(attrs, CKA_UNIQUE_ID, uid, 32, 0));
    object *o = object_wrap(attrs);
    ENSURE(o != NULL, CKR_HOST_MEMORY);
    /* The record names the new object, unless the call already named its
     * key (an unwrap names the unwrapping key; the new key is its
     * resource). */
    bool name_new = s->ev != NULL && s->ev->key == 0 && s->ev->key_label[0] == '\0';
    if (name_new)
        audit_note_key(s, t, o, NULL);
    /* A token object's record goes into the token file with it, in one
     * durable commit (docs/audit.md, "The outbox"). */
    store_audit_rec rec;
    bool outbox = is_token && core_audit_outbox_rec(s, &rec, name_new);

    pthread_mutex_lock(&t->lock);
    if (!is_token) {
        ENSURE_OUT(unless == NULL, CKR_TEMPLATE_INCONSISTENT);
        h = o->handle = SESSION_OBJECT_BIT | t->next_sobj++;
        o->owner = s->handle;
        ENSURE_OUT(hmap_put(&t->sobjs, h, o), CKR_HOST_MEMORY);
        o = NULL; /* the session-object table owns it */
        goto out;
    }
    ENSURE_OUT(token_ready(t), CKR_TOKEN_NOT_RECOGNIZED);
    sa = calloc(o->attrs.n ? o->attrs.n : 1, sizeof(*sa));
    ENSURE_OUT(sa != NULL, CKR_HOST_MEMORY);
    bool secret = false;
    for (size_t i = 0; i < o->attrs.n; i++) {
        const attr *a = &o->attrs.v[i];
        sa[i].type = a->type;
        sa[i].value = a->value;
        sa[i].len = a->len;
        sa[i].secret = (a->flags & ATTR_SECRET) != 0;
        secret |= sa[i].secret;
    }
    ENSURE_OUT(!secret || t->mk != NULL, CKR_USER_NOT_LOGGED_IN);
    /* The record names the handle the client gets: the store ORs the row
     * into these bits. */
    if (outbox && name_new)
        rec.row.key_handle = (int64_t)object_client_handle(t, 0, o->is_private);
    /* On disk before CKR_OK: store_object_insert commits durably. */
    if (unless != NULL)
        GUARD_OUT(store_object_insert_unless(t->st, t->mk, sa, o->attrs.n, unless, upd_row, upd,
                                             upd_n, outbox ? &rec : NULL, &h));
    else
        GUARD_OUT(store_object_insert_audited(t->st, t->mk, sa, o->attrs.n,
                                              outbox ? &rec : NULL, &h));
    if (outbox)
        core_audit_outbox_committed(s);
    if (h > HANDLE_ROW_MASK) {
        /* Four billion objects made in this token: handles would collide. */
        rv = store_object_delete(t->st, h);
        rv = CKR_DEVICE_MEMORY;
        goto out;
    }
    o->handle = h;
    h = object_client_handle(t, h, o->is_private);
    /* Our own commit does not move data_version: cache the new object
     * (if that fails it is simply loaded again on first use). */
    if (hmap_put(&t->cache, o->handle, o))
        o = NULL;
out:
    pthread_mutex_unlock(&t->lock);
    free(sa);
    object_unref(o);
    if (rv == CKR_OK) {
        *out = h;
        if (name_new && is_token)
            s->ev->key = h;
    }
    return rv;
}

CK_RV core_create_object(session *s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    attr_list l;
    attr_list_init(&l);
    GUARD(role_check(s->tok, ACT_CREATE));
    CK_RV rv = schema_build_as(TMPL_CREATE, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION,
                               CK_UNAVAILABLE_INFORMATION, t, n, s->tok->login == LOGIN_SO, &l);
    if (rv == CKR_OK)
        rv = object_add(s, &l, out);
    attr_list_free(&l);
    return rv;
}

/* Apply a SET/COPY template to a snapshot of the object's attributes,
 * with secrets opened so that a copy can be sealed anew. */
struct apply_args {
    token *t;
    object *o;
    tmpl_op op;
    CK_ATTRIBUTE_PTR tmpl;
    CK_ULONG n;
    attr_list *out;
};

static CK_RV apply_locked(attr_list *l, void *arg)
{
    struct apply_args *a = arg;
    GUARD(open_sealed_locked(a->t, a->o));
    return schema_apply(a->op, l, a->tmpl, a->n, a->t->login == LOGIN_SO, a->out);
}

CK_RV core_copy_object(session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                       CK_OBJECT_HANDLE_PTR out)
{
    object *o;
    attr_list l;
    attr_list_init(&l);
    GUARD(role_check(s->tok, ACT_CREATE));
    GUARD(object_get(s, h, &o));
    struct apply_args a = { s->tok, o, TMPL_COPY, t, n, &l };
    CK_RV rv = object_with_attrs(s->tok, o, apply_locked, &a);
    if (rv == CKR_OK)
        rv = object_add(s, &l, out);
    attr_list_free(&l);
    object_unref(o);
    return rv;
}

CK_RV core_set_attributes(session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    token *tok = s->tok;
    object *o;
    CK_RV rv;
    attr_list l;
    store_attr *sa = NULL;

    attr_list_init(&l);
    GUARD(object_get(s, h, &o));
    audit_note_key(s, tok, o, NULL);
    GUARD_OUT(may_write(s, o->is_token, o->is_private));
    /* Key-family policy is the admin's (docs/roles.md). */
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ATTRIBUTE_TYPE ty = t[i].type;
        if (ty == CKA_CUSTOS_STATE || ty == CKA_CUSTOS_ROTATION_PERIOD ||
            ty == CKA_CUSTOS_NOT_AFTER || ty == CKA_CUSTOS_ALLOWED_USERS)
            ENSURE_OUT(tok->roles & CUSTOS_ROLE_ADMIN, CKR_ACTION_PROHIBITED);
        if (ty == CKA_CUSTOS_STATE) {
            CK_ULONG st = 0;
            if (t[i].pValue != NULL && t[i].ulValueLen == sizeof(st))
                memcpy(&st, t[i].pValue, sizeof(st));
            ENSURE_OUT(st >= CUSTOS_STATE_ACTIVE && st <= CUSTOS_STATE_PENDING_DESTRUCTION,
                       CKR_ATTRIBUTE_VALUE_INVALID);
        }
    }
    struct apply_args a = { tok, o, TMPL_SET, t, n, &l };
    GUARD_OUT(object_with_attrs(tok, o, apply_locked, &a));
    store_audit_rec rec;
    bool outbox = o->is_token && core_audit_outbox_rec(s, &rec, false);
    pthread_mutex_lock(&tok->lock);
    if (o->is_token) {
        /* Persist the attributes the template named, with their new
         * values, durably, before the object in memory changes. */
        sa = calloc(n ? n : 1, sizeof(*sa));
        rv = sa != NULL ? CKR_OK : CKR_HOST_MEMORY;
        for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++) {
            attr *na = attr_find(&l, t[i].type);
            sa[i].type = t[i].type;
            sa[i].value = na ? na->value : NULL;
            sa[i].len = na ? na->len : 0;
            sa[i].secret = na && (na->flags & ATTR_SECRET);
        }
        if (rv == CKR_OK)
            rv = store_object_update_audited(tok->st, tok->mk, o->handle, sa, n,
                                             outbox ? &rec : NULL);
        if (rv == CKR_OK && outbox)
            core_audit_outbox_committed(s);
    } else {
        rv = CKR_OK;
    }
    if (rv == CKR_OK) {
        attr_list old = o->attrs;
        o->attrs = l;
        attr_list_init(&l);
        attr_list_free(&old);
        free(o->aud); /* the label, id or family may have changed */
        o->aud = NULL;
        atomic_fetch_add(&tok->gen, 1);
        o->is_private = attr_bool(&o->attrs, CKA_PRIVATE, false);
        const attr *acl = attr_find(&o->attrs, CKA_CUSTOS_ALLOWED_USERS);
        free(o->acl);
        o->acl = acl != NULL && acl->len > 0 ? strndup((const char *)acl->value, acl->len) : NULL;
    }
    pthread_mutex_unlock(&tok->lock);
out:
    free(sa);
    attr_list_free(&l);
    object_unref(o);
    return rv;
}

CK_RV core_destroy_object(session *s, CK_OBJECT_HANDLE h)
{
    token *t = s->tok;
    object *o;
    CK_RV rv;

    GUARD(object_get(s, h, &o));
    audit_note_key(s, t, o, NULL);
    /* sec. 4.4: CKA_DESTROYABLE false -> CKR_ACTION_PROHIBITED. */
    ENSURE_OUT(object_bool(t, o, CKA_DESTROYABLE, true), CKR_ACTION_PROHIBITED);
    GUARD_OUT(may_write(s, o->is_token, o->is_private));
    /* A token key and the record of its destruction (the evidence of a
     * crypto-shredding) go to disk in one commit. */
    store_audit_rec rec;
    bool outbox = o->is_token && core_audit_outbox_rec(s, &rec, false);
    pthread_mutex_lock(&t->lock);
    atomic_fetch_add(&t->gen, 1);
    if (o->is_token) {
        rv = store_object_delete_audited(t->st, o->handle, outbox ? &rec : NULL);
        if (rv == CKR_OK) {
            object *c = hmap_del(&t->cache, o->handle);
            object_unref(c);
            if (outbox)
                core_audit_outbox_committed(s);
        }
    } else {
        object *c = hmap_del(&t->sobjs, h);
        object_unref(c);
        rv = CKR_OK;
    }
    pthread_mutex_unlock(&t->lock);
out:
    object_unref(o);
    return rv;
}

static CK_RV size_locked(attr_list *l, void *arg)
{
    CK_ULONG total = 0;
    for (size_t i = 0; i < l->n; i++)
        total += sizeof(CK_ATTRIBUTE) + l->v[i].len;
    *(CK_ULONG *)arg = total;
    return CKR_OK;
}

CK_RV core_get_object_size(session *s, CK_OBJECT_HANDLE h, CK_ULONG_PTR size)
{
    object *o;
    GUARD(object_get(s, h, &o));
    CK_RV rv = object_with_attrs(s->tok, o, size_locked, size);
    object_unref(o);
    return rv;
}

struct get_args {
    CK_ATTRIBUTE_PTR t;
    CK_ULONG n;
};

static CK_RV get_locked(attr_list *l, void *arg)
{
    struct get_args *g = arg;
    return schema_get(l, g->t, g->n);
}

/* CKA_CUSTOS_ENCRYPT_COUNT is the store's counter (every process's
 * reservations), read when asked for. */
static void refresh_count(token *t, object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    char name[32];
    uint64_t v;
    for (CK_ULONG i = 0; i < n; i++) {
        if (tmpl[i].type != CKA_CUSTOS_ENCRYPT_COUNT || !o->is_token)
            continue;
        snprintf(name, sizeof(name), "enc:%llu", (unsigned long long)o->handle);
        if (store_counter_get(t->st, name, &v) == CKR_OK) {
            pthread_mutex_lock(&t->lock);
            if (attr_find(&o->attrs, CKA_CUSTOS_ENCRYPT_COUNT) != NULL &&
                attr_set_ulong(&o->attrs, CKA_CUSTOS_ENCRYPT_COUNT, (CK_ULONG)v) != CKR_OK)
                v = 0;
            pthread_mutex_unlock(&t->lock);
        }
        break;
    }
}

CK_RV core_get_attributes(session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    object *o;
    GUARD(object_get(s, h, &o));
    refresh_count(s->tok, o, t, n);
    struct get_args g = { t, n };
    CK_RV rv = object_with_attrs(s->tok, o, get_locked, &g);
    object_unref(o);
    return rv;
}

void object_drop_session_objects(token *t, CK_SESSION_HANDLE owner)
{
    pthread_mutex_lock(&t->lock);
    atomic_fetch_add(&t->gen, 1);
    size_t pos = 0;
    uint64_t key;
    void *val;
    while (hmap_next(&t->sobjs, &pos, &key, &val)) {
        object *o = val;
        if (o->owner == owner) {
            hmap_del(&t->sobjs, key);
            object_unref(o);
        }
    }
    pthread_mutex_unlock(&t->lock);
}
