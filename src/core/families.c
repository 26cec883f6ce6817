/* Key families, versions and rotation (docs/key-families.md), the state
 * and date rules every key obeys, and the per-key encryption counter that
 * enforces the NIST SP 800-38D bound on random 96-bit nonces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

/* SP 800-38D sec. 8.3: at most 2^32 invocations with random 96-bit IVs. */
#define NONCE_LIMIT (1ULL << 32)
/* Counter reservations grow from 1 to this many per store write. */
#define RESERVE_MAX (1ULL << 20)

static const CK_BBOOL ck_true = CK_TRUE;

/* ---- names ---------------------------------------------------------------- */

/* A family name: 1..48 bytes of UTF-8 without ':' or ',' or NUL. */
static bool family_name_ok(const uint8_t *p, size_t n)
{
    return n > 0 && n <= 48 && memchr(p, ':', n) == NULL && memchr(p, ',', n) == NULL &&
           memchr(p, '\0', n) == NULL;
}

static int version_id(char *out, size_t cap, const char *family, CK_ULONG version)
{
    return snprintf(out, cap, "%s:v%lu", family, (unsigned long)version);
}

/* ---- state and date rules ------------------------------------------------- */

/* Today as a CK_DATE string "YYYYMMDD" (UTC). */
/* Seconds since the epoch of the start (end: false) or the end (true) of
 * a CK_DATE day (UTC); false when the date is absent or malformed. */
static bool date_bound(const attr *a, bool end, int64_t *out)
{
    struct tm tm;
    char day[9];
    if (a == NULL || a->len != 8)
        return false;
    memset(&tm, 0, sizeof(tm));
    memcpy(day, a->value, 8);
    day[8] = '\0';
    if (sscanf(day, "%4d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) + (end ? 86400 : 0);
    return true;
}

void family_use_window(const attr_list *l, bool protect, int64_t *from, int64_t *until)
{
    CK_ULONG v;
    int64_t t;
    /* PKCS#11 CK_DATE validity: no use before the start date; no new
     * protection after the end date (old data stays readable). */
    *from = date_bound(attr_find(l, CKA_START_DATE), false, &t) ? t : INT64_MIN;
    *until = INT64_MAX;
    if (!protect)
        return;
    if (date_bound(attr_find(l, CKA_END_DATE), true, &t) && t < *until)
        *until = t;
    if (attr_get_ulong(l, CKA_CUSTOS_NOT_AFTER, &v) && v != 0 && (int64_t)v + 1 < *until)
        *until = (int64_t)v + 1;
}

CK_RV family_check_use_locked(const attr_list *l, bool protect)
{
    CK_ULONG v;
    int64_t from, until, now = (int64_t)time(NULL);
    /* docs/key-families.md: what each state allows. */
    if (attr_get_ulong(l, CKA_CUSTOS_STATE, &v)) {
        ENSURE(v != CUSTOS_STATE_SUSPENDED && v != CUSTOS_STATE_PENDING_DESTRUCTION,
               CKR_KEY_FUNCTION_NOT_PERMITTED);
        if (protect)
            ENSURE(v == CUSTOS_STATE_ACTIVE, CKR_KEY_FUNCTION_NOT_PERMITTED);
    }
    family_use_window(l, protect, &from, &until);
    ENSURE(now >= from && now < until, CKR_KEY_FUNCTION_NOT_PERMITTED);
    return CKR_OK;
}

/* ---- creating a family ----------------------------------------------------- */

/* Was the attribute given in the caller's template, and with this value? */
static const CK_ATTRIBUTE *given(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

static bool same_bytes(const CK_ATTRIBUTE *a, const void *v, size_t len)
{
    return a->ulValueLen == len && (len == 0 || memcmp(a->pValue, v, len) == 0);
}

/* Set what the token decides for a version. */
static CK_RV stamp_version(attr_list *l, CK_ULONG version, const char *id, const char *label)
{
    GUARD(attr_set_ulong(l, CKA_CUSTOS_VERSION, version));
    GUARD(attr_set_ulong(l, CKA_CUSTOS_STATE, CUSTOS_STATE_ACTIVE));
    GUARD(attr_set_ulong(l, CKA_CUSTOS_CREATED, (CK_ULONG)time(NULL)));
    GUARD(attr_set(l, CKA_ID, id, strlen(id), 0));
    GUARD(attr_set(l, CKA_LABEL, label, strlen(label), 0));
    GUARD(attr_set_ulong(l, CKA_CUSTOS_ENCRYPT_COUNT, 0));
    attr_remove(l, CKA_CUSTOS_ROTATED);
    return CKR_OK;
}

CK_RV family_prepare_new(session *s, const CK_ATTRIBUTE *t, CK_ULONG n, attr_list *l,
                         CK_ATTRIBUTE *unless, char *idbuf, size_t idcap)
{
    const attr *fam = attr_find(l, CKA_CUSTOS_FAMILY);
    char name[64];
    const CK_ATTRIBUTE *g;

    ENSURE(fam != NULL, CKR_TEMPLATE_INCOMPLETE);
    /* Key-family lifecycle is the admin's (docs/roles.md). */
    ENSURE(s->tok->login == LOGIN_SO && (s->tok->roles & CUSTOS_ROLE_ADMIN), CKR_ACTION_PROHIBITED);
    ENSURE(family_name_ok(fam->value, fam->len), CKR_ATTRIBUTE_VALUE_INVALID);
    memcpy(name, fam->value, fam->len);
    name[fam->len] = '\0';
    /* A family version lives on the token and never leaves it. */
    g = given(t, n, CKA_TOKEN);
    ENSURE(g == NULL || same_bytes(g, &ck_true, 1), CKR_TEMPLATE_INCONSISTENT);
    g = given(t, n, CKA_EXTRACTABLE);
    ENSURE(g == NULL || !same_bytes(g, &ck_true, 1), CKR_TEMPLATE_INCONSISTENT);
    version_id(idbuf, idcap, name, 1);
    g = given(t, n, CKA_ID);
    ENSURE(g == NULL || same_bytes(g, idbuf, strlen(idbuf)), CKR_TEMPLATE_INCONSISTENT);
    g = given(t, n, CKA_LABEL);
    ENSURE(g == NULL || same_bytes(g, name, strlen(name)), CKR_TEMPLATE_INCONSISTENT);
    GUARD(attr_set_bool(l, CKA_TOKEN, true));
    GUARD(attr_set_bool(l, CKA_EXTRACTABLE, false));
    GUARD(attr_set_bool(l, CKA_NEVER_EXTRACTABLE, true));
    GUARD(stamp_version(l, 1, idbuf, name));
    /* No object of the family may exist yet, whichever version (v1 may
     * have been destroyed while v2 is current). idbuf holds the id and,
     * after it, the name the guard compares. */
    size_t idlen = strlen(idbuf);
    ENSURE(idlen + 1 + fam->len < idcap, CKR_ATTRIBUTE_VALUE_INVALID);
    memcpy(idbuf + idlen + 1, fam->value, fam->len);
    unless->type = CKA_CUSTOS_FAMILY;
    unless->pValue = idbuf + idlen + 1;
    unless->ulValueLen = fam->len;
    return CKR_OK;
}

/* ---- rotation ------------------------------------------------------------------ */

/* The current (ACTIVE) version of a family: row handle and version. */
static CK_RV current_version(token *t, const char *family, CK_OBJECT_HANDLE *row, CK_ULONG *version)
{
    CK_ULONG active = CUSTOS_STATE_ACTIVE;
    CK_ATTRIBUTE q[] = {
        { CKA_CUSTOS_FAMILY, (CK_VOID_PTR)family, strlen(family) },
        { CKA_CUSTOS_STATE, &active, sizeof(active) },
    };
    static const CK_ATTRIBUTE_TYPE side[] = { CKA_CUSTOS_VERSION };
    store_found f;

    /* The versions come with the hits: one statement, one snapshot. */
    GUARD(store_find_with(t->st, q, 2, side, 1, &f));
    *row = 0;
    *version = 0;
    for (size_t i = 0; i < f.count; i++) {
        CK_ULONG v;
        if (f.hits[i].len[0] != sizeof(v))
            continue;
        memcpy(&v, f.arena + f.hits[i].off[0], sizeof(v));
        if (v > *version) {
            *version = v;
            *row = f.hits[i].handle;
        }
    }
    store_found_free(&f);
    ENSURE(*row != 0, CKR_ARGUMENTS_BAD);
    return CKR_OK;
}

CK_RV family_rotate(session *s, const char *family, CK_ULONG expect, CK_ULONG *new_version)
{
    return family_rotate_as(s, family, expect, false, new_version);
}

CK_RV family_rotate_as(session *s, const char *family, CK_ULONG expect, bool automatic,
                       CK_ULONG *new_version)
{
    token *t = s->tok;
    CK_RV rv;
    CK_OBJECT_HANDLE row, h = 0;
    CK_ULONG version;
    object *cur = NULL;
    attr_list l;
    uint8_t *v = NULL;
    size_t vlen = 0;
    char id[80], old_label[80];

    attr_list_init(&l);
    ENSURE(token_ready(t), CKR_TOKEN_NOT_RECOGNIZED);
    GUARD(current_version(t, family, &row, &version));
    if (expect != 0 && version != expect) {
        /* Someone rotated since the caller looked: that was the rotation. */
        if (new_version != NULL)
            *new_version = version;
        return CKR_OK;
    }
    /* The current version's attributes, secrets opened, as the model of
     * the next one (same key type and size, usage, policy). */
    pthread_mutex_lock(&t->lock);
    rv = t->mk != NULL ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK)
        rv = object_load_row_locked(t, row, &cur);
    if (rv == CKR_OK)
        rv = object_open_locked(t, cur);
    if (rv == CKR_OK)
        rv = attr_list_copy(&l, &cur->attrs);
    pthread_mutex_unlock(&t->lock);
    GUARD_OUT(rv);

    const attr *val = attr_find(&l, CKA_VALUE);
    ENSURE_OUT(val != NULL && val->len > 0, CKR_GENERAL_ERROR);
    vlen = val->len;
    v = secmem_alloc(vlen);
    ENSURE_OUT(v != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(crypto_random(v, vlen));
    GUARD_OUT(attr_set(&l, CKA_VALUE, v, vlen, ATTR_SECRET));
    version_id(id, sizeof(id), family, version + 1);
    GUARD_OUT(stamp_version(&l, version + 1, id, family));
    GUARD_OUT(attr_set_bool(&l, CKA_LOCAL, true));
    /* A new version starts afresh: no inherited expiry. */
    attr_remove(&l, CKA_CUSTOS_NOT_AFTER);
    attr_remove(&l, CKA_START_DATE);
    attr_remove(&l, CKA_END_DATE);
    GUARD_OUT(attr_set_bool(&l, CKA_ALWAYS_SENSITIVE, true));
    GUARD_OUT(attr_set_bool(&l, CKA_NEVER_EXTRACTABLE, true));

    /* The old version, rotated out in the same transaction. */
    version_id(old_label, sizeof(old_label), family, version);
    CK_ULONG st_dec = CUSTOS_STATE_DECRYPT_ONLY, now = (CK_ULONG)time(NULL);
    store_attr upd[] = {
        { CKA_LABEL, (uint8_t *)old_label, strlen(old_label), false },
        { CKA_CUSTOS_STATE, (uint8_t *)&st_dec, sizeof(st_dec), false },
        { CKA_CUSTOS_ROTATED, (uint8_t *)&now, sizeof(now), false },
    };
    CK_ATTRIBUTE unless = { CKA_ID, id, strlen(id) };
    /* The token acts by itself here (a due rotation may be triggered from
     * a read-only session): no session or role check on the insert. */
    rv = object_add_internal(s, &l, &unless, row, upd, ARRAY_LEN(upd), &h);
    if (rv == CKR_ACTION_PROHIBITED) {
        /* Another process rotated from the same version first: its
         * version is the new one. */
        rv = CKR_OK;
    }
    GUARD_OUT(rv);
    pthread_mutex_lock(&t->lock);
    object *old = hmap_del(&t->cache, row);
    atomic_fetch_add(&t->gen, 1);
    pthread_mutex_unlock(&t->lock);
    object_unref(old);
    if (h != 0)
        audit_rotation(s, family, version + 1, automatic);
    if (new_version != NULL)
        *new_version = version + 1;
out:
    object_unref(cur);
    secmem_free(v, vlen);
    attr_list_free(&l);
    return rv;
}

bool family_due_locked(const attr_list *l)
{
    CK_ULONG period = 0, created = 0, state = 0;
    return attr_get_ulong(l, CKA_CUSTOS_ROTATION_PERIOD, &period) && period != 0 &&
           attr_get_ulong(l, CKA_CUSTOS_STATE, &state) && state == CUSTOS_STATE_ACTIVE &&
           attr_get_ulong(l, CKA_CUSTOS_CREATED, &created) &&
           (CK_ULONG)time(NULL) >= created + period;
}

CK_RV family_maybe_rotate(session *s, object *o)
{
    token *t = s->tok;
    CK_ULONG period = 0, created = 0, state = 0;
    char family[64] = "";

    pthread_mutex_lock(&t->lock);
    const attr *fam = attr_find(&o->attrs, CKA_CUSTOS_FAMILY);
    bool member = fam != NULL && fam->len < sizeof(family) &&
                  attr_get_ulong(&o->attrs, CKA_CUSTOS_ROTATION_PERIOD, &period) &&
                  attr_get_ulong(&o->attrs, CKA_CUSTOS_CREATED, &created) &&
                  attr_get_ulong(&o->attrs, CKA_CUSTOS_STATE, &state);
    if (member) {
        memcpy(family, fam->value, fam->len);
        family[fam->len] = '\0';
    }
    pthread_mutex_unlock(&t->lock);
    if (!member || period == 0 || state != CUSTOS_STATE_ACTIVE ||
        (CK_ULONG)time(NULL) < created + period)
        return CKR_OK;
    /* Of processes racing past the same period, exactly one rotates. */
    CK_ULONG version = 0;
    pthread_mutex_lock(&t->lock);
    bool ok = attr_get_ulong(&o->attrs, CKA_CUSTOS_VERSION, &version);
    pthread_mutex_unlock(&t->lock);
    return ok ? family_rotate_as(s, family, version, true, NULL) : CKR_OK;
}

CK_RV family_rotate_due(session *s, CK_ULONG *rotated)
{
    token *t = s->tok;
    CK_ULONG active = CUSTOS_STATE_ACTIVE;
    CK_ATTRIBUTE q[] = { { CKA_CUSTOS_STATE, &active, sizeof(active) } };
    CK_OBJECT_HANDLE *hs = NULL;
    size_t count = 0;
    CK_RV rv = CKR_OK;

    *rotated = 0;
    GUARD(store_find(t->st, q, 1, &hs, &count));
    for (size_t i = 0; i < count && rv == CKR_OK; i++) {
        object *o = NULL;
        pthread_mutex_lock(&t->lock);
        rv = object_load_row_locked(t, hs[i], &o);
        pthread_mutex_unlock(&t->lock);
        if (rv != CKR_OK)
            break;
        rv = family_maybe_rotate(s, o);
        object_unref(o);
        if (rv == CKR_OK) {
            CK_ULONG st;
            size_t len;
            bool found;
            if (store_object_attr(t->st, hs[i], CKA_CUSTOS_STATE, (uint8_t *)&st, sizeof(st), &len,
                                  &found) == CKR_OK &&
                found && st == CUSTOS_STATE_DECRYPT_ONLY)
                (*rotated)++;
        }
    }
    free(hs);
    return rv;
}

/* ---- the encryption counter ---------------------------------------------------- */

typedef struct enc_counter {
    uint64_t next;   /* next count this process may use */
    uint64_t end;    /* end of the block it reserved in the store */
    uint64_t block;  /* size of the next reservation */
} enc_counter;

/* Take up to want consecutive counts of a key: [*first, *first + *got). */
static CK_RV take_counts(token *t, CK_OBJECT_HANDLE row, uint64_t want, uint64_t *first,
                         uint64_t *got)
{
    char name[32];
    CK_RV rv = CKR_OK;

    bool session_key = (row & SESSION_OBJECT_BIT) != 0;
    pthread_mutex_lock(&t->lock);
    enc_counter *c = hmap_get(&t->counters, row);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL || !hmap_put(&t->counters, row, c)) {
            free(c);
            pthread_mutex_unlock(&t->lock);
            return CKR_HOST_MEMORY;
        }
        c->block = 1;
        /* A session key lives and dies in this process: counted here. */
        if (session_key)
            c->end = NONCE_LIMIT;
    }
    if (c->next == c->end && session_key) {
        rv = CKR_KEY_EXHAUSTED;
    } else if (c->next == c->end) {
        /* Reserve a block in the store before using it: a crash loses at
         * most the unused part (the count only ever over-estimates). */
        uint64_t granted, after;
        uint64_t block = c->block > want ? c->block : want;
        snprintf(name, sizeof(name), "enc:%llu", (unsigned long long)row);
        rv = store_counter_add(t->st, name, block, NONCE_LIMIT, &granted, &after);
        if (rv == CKR_OK && granted == 0)
            rv = CKR_KEY_EXHAUSTED;
        if (rv == CKR_OK) {
            c->next = after - granted;
            c->end = after;
            if (c->block < RESERVE_MAX)
                c->block *= 2;
        }
    }
    if (rv == CKR_OK) {
        *first = c->next;
        *got = c->end - c->next < want ? c->end - c->next : want;
        c->next += *got;
    }
    pthread_mutex_unlock(&t->lock);
    return rv;
}

CK_RV family_count_encryption_seq(token *t, CK_OBJECT_HANDLE row, uint64_t *seq)
{
    uint64_t got;
    return take_counts(t, row, 1, seq, &got);
}

/* A session counts from a lease of the key's counts, so that sessions on
 * other threads do not meet at the token lock on every encryption. */
#define LEASE_MAX 256

CK_RV session_count_encryption(session *s, CK_OBJECT_HANDLE row, uint64_t *seq)
{
    if (s->lease_row != row || s->lease_next == s->lease_end) {
        uint64_t first, got;
        /* Lease sizes grow with use, so a session encrypting once takes one. */
        uint64_t want = s->lease_row == row && s->lease_size < LEASE_MAX ? s->lease_size * 2 : 1;
        if (s->lease_row == row && s->lease_size >= LEASE_MAX)
            want = LEASE_MAX;
        GUARD(take_counts(s->tok, row, want, &first, &got));
        s->lease_row = row;
        s->lease_next = first;
        s->lease_end = first + got;
        s->lease_size = got;
    }
    *seq = s->lease_next++;
    return CKR_OK;
}

void family_counters_free_locked(token *t)
{
    size_t pos = 0;
    uint64_t key;
    void *val;
    while (hmap_next(&t->counters, &pos, &key, &val))
        free(val);
    hmap_free(&t->counters);
}
