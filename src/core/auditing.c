/* The audit record of a call (docs/audit.md; DESIGN.md "audit is written in
 * one place"): the entry layer opens it (core_audit_begin), the core notes
 * what it learns (user, key, resource, why a request was denied), the entry
 * layer closes it with the return code (core_audit_end), which writes it, or
 * for a successful data operation adds it to an aggregate. Nothing secret is
 * noted: a key by label, id, family and version; a resource by the SHA-256
 * of its AAD or the label of the key wrapped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/internal.h"
#include "crypto/crypto.h"

/* Why a refusal was a refusal: the decision column. Other failures are
 * "allowed" requests that failed (a wrong tag, a short buffer...). */
static const struct {
    CK_RV rv;
    const char *why;
} denials[] = {
    { CKR_ACTION_PROHIBITED, "not permitted for this role or by policy" },
    { CKR_USER_NOT_LOGGED_IN, "not logged in" },
    { CKR_PIN_INCORRECT, "wrong PIN" },
    { CKR_PIN_LOCKED, "PIN locked or user disabled" },
    { CKR_KEY_FUNCTION_NOT_PERMITTED, "key usage does not permit it" },
    { CKR_KEY_UNEXTRACTABLE, "key is not extractable" },
    { CKR_KEY_NOT_WRAPPABLE, "key may not be wrapped by this key" },
    { CKR_SESSION_READ_ONLY, "read-only session" },
    { CKR_ATTRIBUTE_READ_ONLY, "attribute may not be set" },
    { CKR_USER_TYPE_INVALID, "no such user type" },
};

static const char *denial(CK_RV rv)
{
    for (size_t i = 0; i < ARRAY_LEN(denials); i++)
        if (denials[i].rv == rv)
            return denials[i].why;
    return NULL;
}

CK_RV core_audit_begin(session *s, const char *fn, aud_class cls, audit_event *ev)
{
    token *t = s->tok;
    s->ev = NULL;
    s->aud = AUD_NONE;
    s->size_query = false;
    if (t->audit == NULL) {
        /* Required but the trail could not be opened: refuse. */
        return lib.cfg.audit.required && lib.cfg.audit.enabled && t->audit_rv != CKR_OK
                   ? t->audit_rv : CKR_OK;
    }
    if (t->audit_rv != CKR_OK && lib.cfg.audit.required) {
        /* Fail closed until what is pending can be written again. */
        if (audit_flush(t->audit, true) != CKR_OK)
            return t->audit_rv;
        t->audit_rv = CKR_OK;
    }
    if (cls == AUD_ALWAYS && lib.cfg.audit.required) {
        /* A call that changes something (a login, a key) must not take
         * effect unless its record can be written: make sure first. */
        CK_RV rv = audit_ready(t->audit);
        if (rv != CKR_OK) {
            t->audit_rv = rv;
            return rv;
        }
    }
    /* Field by field, strings cut at their first byte: this runs twice per
     * data operation and the event is some 400 bytes, most of them string
     * buffers that are only ever read up to their NUL (a memset of the whole
     * was 6% of a 64-byte AES-GCM encryption). */
    ev->kind = cls == AUD_DATA ? AUDIT_DATA : AUDIT_EVENT;
    ev->function = fn;
    ev->session = s->handle;
    ev->mech = CK_UNAVAILABLE_INFORMATION;
    ev->user = NULL;
    ev->roles = 0;
    ev->key = 0;
    ev->key_label[0] = '\0';
    ev->key_id[0] = '\0';
    ev->key_family[0] = '\0';
    ev->key_version = 0;
    ev->has_resource_digest = false;
    ev->resource_label[0] = '\0';
    ev->rv = CKR_OK;
    ev->deny_reason = NULL;
    ev->count = 0;
    s->ev = ev;
    s->ev_key = NULL;
    s->ev_outboxed = false;
    s->aud = cls;
    return CKR_OK;
}

/* ---- the session's pending aggregate -------------------------------------
 * A session's run of identical data operations (same function, key,
 * resource, result) is counted here, in the session, and handed to the
 * audit log as one event with a count: at most every 100 ms, when the run
 * changes, and when the session closes. The log's own aggregation and its
 * shared lock then see a few events a second per session instead of every
 * operation. */
#define PEND_PUSH_MS 100

/* The names of the key audit_use_op_key noted, into the event. */
static void copy_key_names(const aud_key *k, audit_event *ev)
{
    memcpy(ev->key_label, k->label, sizeof(ev->key_label));
    memcpy(ev->key_id, k->id, sizeof(ev->key_id));
    memcpy(ev->key_family, k->family, sizeof(ev->key_family));
}

static void ev_key_names(session *s, audit_event *ev)
{
    const aud_key *k = s->ev_key;
    if (k == NULL)
        return;
    s->ev_key = NULL;
    copy_key_names(k, ev);
}

/* Names compared by pointer first: a function's name is the same string
 * literal on every call. */
static bool same_str(const char *a, const char *b)
{
    return a == b || strcmp(a, b) == 0;
}

/* The user of the pending run is the one ev_who last read, as long as
 * no login or logout changed it since: no string to compare. */
static bool same_user(const session *s, const audit_event *e)
{
    return (e->user == s->who && s->pend_who_gen != 0 && s->pend_who_gen == s->who_gen) ||
           strcmp(s->pend.user, e->user) == 0;
}

static bool same_run(const session *s, const audit_event *e)
{
    const audit_event *p = &s->pend;
    return p->mech == e->mech && p->key == e->key && p->rv == e->rv && p->roles == e->roles &&
           p->has_resource_digest == e->has_resource_digest &&
           (!p->has_resource_digest ||
            memcmp(p->resource_digest, e->resource_digest, sizeof(p->resource_digest)) == 0) &&
           same_str(p->function, e->function) && same_user(s, e) &&
           p->resource_label[0] == e->resource_label[0] &&
           (p->resource_label[0] == '\0' || strcmp(p->resource_label, e->resource_label) == 0) &&
           p->key_version == e->key_version;
}

void audit_session_push(session *s)
{
    token *t = s->tok;
    if (s->pend.count == 0 || t->audit == NULL) {
        s->pend.count = 0;
        return;
    }
    CK_RV arv = audit_record(t->audit, &s->pend);
    if (arv != CKR_OK)
        t->audit_rv = arv;
    s->pend.count = 0;
}

/* Count an allowed data operation in the session's run; now_ns is the
 * call's coarse monotonic clock. */
static void pend(session *s, const audit_event *ev, uint64_t now_ns)
{
    uint64_t now = now_ns / 1000000u;
    if (s->pend.count > 0 && same_run(s, ev)) {
        s->pend.count++;
    } else {
        audit_session_push(s);
        s->pend = *ev;
        ev_key_names(s, &s->pend);
        snprintf(s->pend_user, sizeof(s->pend_user), "%s", ev->user);
        s->pend.user = s->pend_user;
        s->pend_who_gen = ev->user == s->who ? s->who_gen : 0;
        s->pend.count = 1;
        s->pend_ms = now;
    }
    if (now - s->pend_ms >= PEND_PUSH_MS)
        audit_session_push(s);
}

_Static_assert(sizeof(((session *)0)->who) == sizeof(((token *)0)->user),
              "a session's copy of the user fits where the token's does");

/* Who the record names: the session's copy of who is logged in, refreshed
 * under the token lock when a login or logout changed it. The event points
 * at that copy: only this session's calls, which hold its lock, change it. */
static void ev_who(session *s, audit_event *ev)
{
    token *t = s->tok;
    uint64_t g = atomic_load(&t->login_gen);
    if (s->who_gen != g + 1) {
        pthread_mutex_lock(&t->lock);
        g = atomic_load(&t->login_gen);
        memcpy(s->who, t->user, sizeof(s->who));
        s->who_roles = t->roles;
        pthread_mutex_unlock(&t->lock);
        s->who[sizeof(s->who) - 1] = '\0';
        s->who_gen = g + 1; /* + 1: 0 means never filled */
    }
    ev->roles = s->who_roles;
    ev->user = s->who;
}

bool core_audit_outbox_rec(session *s, store_audit_rec *rec, bool names_object)
{
    token *t = s->tok;
    if (s->ev == NULL || t->audit == NULL || s->aud != AUD_ALWAYS)
        return false;
    /* A copy: the call's own event stays as it is, for a failure after
     * the commit (core_audit_end). */
    audit_event ev = *s->ev;
    ev.rv = CKR_OK;
    ev.deny_reason = NULL;
    if (ev.user == NULL)
        ev_who(s, &ev);
    if (s->ev_key != NULL)
        copy_key_names(s->ev_key, &ev);
    audit_outbox_row(t->audit, &ev, &rec->row);
    rec->names_object = names_object;
    return true;
}

void core_audit_outbox_committed(session *s)
{
    s->ev_outboxed = true;
    audit_outbox_added(s->tok->audit);
}

CK_RV core_audit_end(session *s, CK_RV rv)
{
    audit_event *ev = s->ev;
    aud_class cls = s->aud;
    token *t = s->tok;
    /* One clock read for the run and the flush deadline. */
    uint64_t now_ns = audit_mono_coarse_ns();

    s->ev = NULL;
    s->aud = AUD_NONE;
    if (ev == NULL) {
        s->ev_key = NULL;
        return rv;
    }
    /* A length query or a short buffer is not an operation. */
    if ((cls == AUD_FAILURE && rv == CKR_OK) || rv == CKR_BUFFER_TOO_SMALL ||
        (rv == CKR_OK && s->size_query))
        goto flush;
    ev->rv = rv;
    if (s->ev_outboxed) {
        /* Its record went into the outbox with the change, as CKR_OK; a
         * call that then failed after all gets a record of the failure. */
        s->ev_outboxed = false;
        if (rv == CKR_OK)
            goto flush;
    }
    if (ev->user == NULL)
        ev_who(s, ev);
    if (rv != CKR_OK) {
        ev->kind = AUDIT_EVENT; /* refusals and failures are written at once */
        if (ev->deny_reason == NULL)
            ev->deny_reason = denial(rv);
    }
    if (ev->kind == AUDIT_DATA && ev->deny_reason == NULL && !lib.cfg.audit.each_data_op) {
        pend(s, ev, now_ns);
        goto flush;
    }
    ev_key_names(s, ev);
    CK_RV arv = audit_record(t->audit, ev);
    if (arv != CKR_OK) {
        t->audit_rv = arv;
        if (lib.cfg.audit.required && rv == CKR_OK)
            return arv;
    }
flush:
    s->ev_key = NULL; /* the key it names may change with the next call */
    if (audit_flush_due(t->audit, now_ns) != CKR_OK && t->audit_rv == CKR_OK)
        t->audit_rv = CKR_DEVICE_ERROR;
    return rv;
}

void core_audit_token_event(token *t, const char *fn, CK_RV rv)
{
    if (t->audit == NULL)
        return;
    audit_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = AUDIT_EVENT;
    ev.function = fn;
    ev.mech = CK_UNAVAILABLE_INFORMATION;
    ev.user = "";
    ev.rv = rv;
    ev.deny_reason = rv == CKR_OK ? NULL : denial(rv);
    if (audit_record(t->audit, &ev) != CKR_OK)
        t->audit_rv = CKR_DEVICE_ERROR;
}

/* Describe an object for the trail, once (t->lock held). */
static const aud_key *describe_locked(object *o)
{
    if (o->aud != NULL)
        return o->aud;
    aud_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    const attr *a = attr_find(&o->attrs, CKA_LABEL);
    if (a != NULL)
        snprintf(k->label, sizeof(k->label), "%.*s", (int)a->len, (const char *)a->value);
    a = attr_find(&o->attrs, CKA_ID);
    for (size_t i = 0; a != NULL && i < a->len && 2 * i + 2 < sizeof(k->id); i++)
        snprintf(k->id + 2 * i, 3, "%02x", a->value[i]);
    a = attr_find(&o->attrs, CKA_CUSTOS_FAMILY);
    if (a != NULL)
        snprintf(k->family, sizeof(k->family), "%.*s", (int)a->len, (const char *)a->value);
    CK_ULONG v;
    if (attr_get_ulong(&o->attrs, CKA_CUSTOS_VERSION, &v))
        k->version = v;
    o->aud = k;
    return k;
}

/* The handle a record names: a session object (a DEK that lives for one
 * record) is named by its label only, so that an application's stream of
 * DEKs adds up to one record instead of one per key. */
static CK_OBJECT_HANDLE recorded_handle(const object *o)
{
    return (o->handle & SESSION_OBJECT_BIT) ? 0 : o->handle;
}

void audit_describe_locked(object *o, aud_key *k)
{
    const aud_key *d = describe_locked(o);
    if (d != NULL)
        *k = *d;
    else
        memset(k, 0, sizeof(*k));
    k->has_digest = false;
    k->handle = o->handle;
}

void audit_note_key(session *s, token *t, object *o, aud_key *k)
{
    if (s->ev == NULL && k == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    const aud_key *d = describe_locked(o);
    if (d != NULL && k != NULL) {
        *k = *d;
        k->has_digest = false;
    }
    if (d != NULL && s->ev != NULL && k == NULL) {
        audit_event *ev = s->ev;
        ev->key = recorded_handle(o);
        memcpy(ev->key_label, d->label, sizeof(ev->key_label));
        memcpy(ev->key_id, d->id, sizeof(ev->key_id));
        memcpy(ev->key_family, d->family, sizeof(ev->key_family));
        ev->key_version = d->version;
    }
    pthread_mutex_unlock(&t->lock);
    if (k != NULL)
        k->handle = o->handle;
}

void audit_note_resource(session *s, token *t, object *o)
{
    if (s->ev == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    const aud_key *d = describe_locked(o);
    if (d != NULL)
        memcpy(s->ev->resource_label, d->label, sizeof(s->ev->resource_label));
    pthread_mutex_unlock(&t->lock);
}

bool audit_aad_digest(session *s, const uint8_t *aad, size_t n, uint8_t digest[32])
{
    if (s->tok->audit == NULL || n == 0)
        return false;
    /* The same resource as the last operation of this session (records of
     * one table or tenant in a row): no need to hash it again. */
    if (s->last_aad_len == n && n <= sizeof(s->last_aad) && memcmp(s->last_aad, aad, n) == 0) {
        memcpy(digest, s->last_digest, sizeof(s->last_digest));
        return true;
    }
    if (s->aad_md == NULL && crypto_md_new(MD_SHA256, &s->aad_md) != CKR_OK)
        return false;
    if (crypto_md_update(s->aad_md, aad, n) != CKR_OK || crypto_md_final(s->aad_md, digest) != CKR_OK)
        return false;
    if (n <= sizeof(s->last_aad)) {
        memcpy(s->last_aad, aad, n);
        s->last_aad_len = n;
        memcpy(s->last_digest, digest, sizeof(s->last_digest));
    }
    return true;
}

void audit_note_aad(session *s, aud_key *k, const mech_desc *d, const CK_MECHANISM *m)
{
    const uint8_t *aad;
    size_t n;
    k->has_digest = false;
    if (s->tok->audit == NULL || d->ops->aad == NULL || !d->ops->aad(d, m, &aad, &n))
        return;
    k->has_digest = audit_aad_digest(s, aad, n, k->digest);
}

void audit_note_target(session *s, const char *what)
{
    if (s->ev != NULL)
        snprintf(s->ev->resource_label, sizeof(s->ev->resource_label), "%s", what);
}

void audit_note_denied(session *s, const char *why)
{
    if (s->ev != NULL)
        s->ev->deny_reason = why;
}

void audit_use_op_key(session *s, const aud_key *k)
{
    audit_event *ev = s->ev;
    if (ev == NULL)
        return;
    ev->key = (k->handle & SESSION_OBJECT_BIT) ? 0 : k->handle;
    ev->key_version = k->version;
    ev->has_resource_digest = k->has_digest;
    if (k->has_digest)
        memcpy(ev->resource_digest, k->digest, sizeof(ev->resource_digest));
    s->ev_key = k;
}

void audit_use_key(session *s, const aud_key *k)
{
    audit_use_op_key(s, k);
    ev_key_names(s, s->ev);
}

void audit_token_open_locked(token *t)
{
    if (!lib.cfg.audit.enabled || t->audit != NULL || t->st == NULL)
        return;
    CK_RV rv = audit_open(t->path, t->st, &lib.cfg.audit, &t->audit);
    t->audit_rv = rv;
    if (rv != CKR_OK)
        t->audit = NULL;
}

void audit_session_closed(token *t, CK_SESSION_HANDLE h)
{
    /* The caller pushed the session's pending run first. */
    if (t->audit != NULL && audit_flush_session(t->audit, h) != CKR_OK)
        t->audit_rv = CKR_DEVICE_ERROR;
}

void audit_rotation(session *s, const char *family, CK_ULONG version, bool automatic)
{
    token *t = s->tok;
    if (t->audit == NULL)
        return;
    audit_event ev;
    char user[sizeof(t->user)];
    memset(&ev, 0, sizeof(ev));
    ev.kind = AUDIT_EVENT;
    /* The vendor call records itself; a rotation the token did by itself
     * (a period passed) gets its own record, naming whose use triggered it. */
    ev.function = automatic ? "rotation (period passed)" : "rotation";
    ev.session = s->handle;
    ev.mech = CK_UNAVAILABLE_INFORMATION;
    pthread_mutex_lock(&t->lock);
    memcpy(user, t->user, sizeof(user));
    ev.roles = t->roles;
    pthread_mutex_unlock(&t->lock);
    user[sizeof(user) - 1] = '\0';
    ev.user = user;
    snprintf(ev.key_family, sizeof(ev.key_family), "%s", family);
    ev.key_version = version;
    snprintf(ev.key_label, sizeof(ev.key_label), "%s", family);
    ev.rv = CKR_OK;
    if (audit_record(t->audit, &ev) != CKR_OK)
        t->audit_rv = CKR_DEVICE_ERROR;
}
