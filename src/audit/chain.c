/* The HMAC-SHA256 chain over the audit records and the head sealed in the
 * token (docs/audit.md, "The chain"), and the readers: audit_verify walks
 * the whole chain and checks the head, audit_export writes JSON lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "audit/internal.h"
#include "util/secmem.h"

CK_RV audit_chain_seal(void *ctx, audit_row *r)
{
    crypto_hmac *h = ctx;
    uint8_t buf[AUDIT_CANONICAL_MAX];
    size_t n = audit_canonical(r, buf, sizeof(buf));
    ENSURE(n > 0, CKR_GENERAL_ERROR);
    GUARD(crypto_hmac_update(h, r->prev_mac, AUDIT_MAC_LEN));
    GUARD(crypto_hmac_update(h, buf, n));
    return crypto_hmac_final(h, r->mac);
}

CK_RV audit_chain_head_tag(crypto_hmac *h, int64_t seq, const uint8_t mac[AUDIT_MAC_LEN],
                           uint8_t tag[AUDIT_MAC_LEN])
{
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)((uint64_t)seq >> (56 - 8 * i));
    GUARD(crypto_hmac_update(h, (const uint8_t *)AUDIT_HEAD_LABEL, sizeof(AUDIT_HEAD_LABEL) - 1));
    GUARD(crypto_hmac_update(h, be, sizeof(be)));
    GUARD(crypto_hmac_update(h, mac, AUDIT_MAC_LEN));
    return crypto_hmac_final(h, tag);
}

char *audit_path_for(const char *token_path)
{
    size_t n = strlen(token_path);
    char *p;
    if (n > 3 && strcmp(token_path + n - 3, ".db") == 0)
        n -= 3;
    p = malloc(n + sizeof(".audit.db"));
    if (p == NULL)
        return NULL;
    memcpy(p, token_path, n);
    memcpy(p + n, ".audit.db", sizeof(".audit.db"));
    return p;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- verify ------------------------------------------------------------------ */

typedef struct walk {
    crypto_hmac *h;
    audit_verify_result *out;
    int64_t expect;                 /* the seq the next row must have */
    uint8_t prev[AUDIT_MAC_LEN];
    int64_t head_seq;
    bool head_row_seen;
    uint8_t head_row_mac[AUDIT_MAC_LEN];
    bool broken;
} walk;

static void broken_at(walk *w, int64_t seq, const char *why)
{
    w->broken = true;
    w->out->ok = false;
    w->out->first_bad = (uint64_t)seq;
    audit_copy_str(w->out->reason, sizeof(w->out->reason), why);
}

static CK_RV walk_row(void *ctx, const audit_row *r, const char *malformed)
{
    walk *w = ctx;
    uint8_t mac[AUDIT_MAC_LEN];
    audit_row copy;

    w->out->records++;
    if (w->broken)
        return CKR_OK;
    if (r->seq != w->expect) {
        char why[160];
        if (r->seq > w->expect)
            snprintf(why, sizeof(why), "record %lld is missing (deleted): the next is %lld",
                     (long long)w->expect, (long long)r->seq);
        else
            snprintf(why, sizeof(why), "unexpected sequence number %lld", (long long)r->seq);
        broken_at(w, w->expect, why);
        return CKR_OK;
    }
    if (malformed != NULL) {
        broken_at(w, r->seq, malformed);
        return CKR_OK;
    }
    if (!ct_memeq(r->prev_mac, w->prev, AUDIT_MAC_LEN)) {
        broken_at(w, r->seq, "prev_mac is not the MAC of the record before");
        return CKR_OK;
    }
    copy = *r;
    GUARD(audit_chain_seal(w->h, &copy));
    memcpy(mac, copy.mac, sizeof(mac));
    if (!ct_memeq(mac, r->mac, AUDIT_MAC_LEN)) {
        broken_at(w, r->seq, "MAC mismatch: the record was edited or replaced");
        return CKR_OK;
    }
    if (r->seq == w->head_seq) {
        w->head_row_seen = true;
        memcpy(w->head_row_mac, r->mac, AUDIT_MAC_LEN);
    }
    memcpy(w->prev, r->mac, AUDIT_MAC_LEN);
    w->expect++;
    return CKR_OK;
}

/* The head in the token against the walked chain. */
static CK_RV check_head(walk *w, const uint8_t hmac_[AUDIT_MAC_LEN], const uint8_t htag[AUDIT_MAC_LEN])
{
    uint8_t tag[AUDIT_MAC_LEN];
    int64_t last = w->expect - 1;
    char why[160];

    GUARD(audit_chain_head_tag(w->h, w->head_seq, hmac_, tag));
    if (!ct_memeq(tag, htag, AUDIT_MAC_LEN)) {
        broken_at(w, w->head_seq, "head tag invalid: the chain head in the token was edited");
    } else if (w->head_seq > last) {
        snprintf(why, sizeof(why), "tail cut: the token sealed %lld records, the file ends at %lld",
                 (long long)w->head_seq, (long long)last);
        broken_at(w, last + 1, why);
    } else if (!w->head_row_seen || !ct_memeq(w->head_row_mac, hmac_, AUDIT_MAC_LEN)) {
        broken_at(w, w->head_seq, "head mismatch: this is not the record the token sealed");
    } else {
        w->out->unsealed_tail = (uint64_t)(last - w->head_seq);
    }
    return CKR_OK;
}

CK_RV audit_verify(const char *token_path, store *st, audit_verify_result *out)
{
    CK_RV rv;
    char *path = NULL;
    audit_db *db = NULL;
    uint8_t *key = NULL;
    size_t keylen = 0;
    uint64_t hseq = 0;
    uint8_t hmac_[AUDIT_MAC_LEN], htag[AUDIT_MAC_LEN];
    bool found = false;
    walk w;

    ENSURE(token_path != NULL && st != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    memset(out, 0, sizeof(*out));
    memset(&w, 0, sizeof(w));
    out->ok = true;
    w.out = out;
    w.expect = 1;
    path = audit_path_for(token_path);
    ENSURE(path != NULL, CKR_HOST_MEMORY);
    /* The head first: records commit before the head moves, so a snapshot
     * of the file taken after it holds every sealed record. */
    GUARD_OUT(store_audit_head_get(st, &hseq, hmac_, htag, &found));
    ENSURE_OUT(hseq <= INT64_MAX, CKR_DEVICE_ERROR);
    out->sealed_count = found ? hseq : 0;
    w.head_seq = found ? (int64_t)hseq : 0;
    if (!exists(path)) {
        if (found && hseq > 0)
            broken_at(&w, 1, "the audit file is missing but the token sealed records");
        rv = CKR_OK;
        goto out;
    }
    GUARD_OUT(audit_db_open(path, false, &db));
    GUARD_OUT(store_meta_get(st, AUDIT_KEY_META, &key, &keylen));
    if (key == NULL || keylen != AUDIT_KEY_LEN) {
        int64_t last = 0;
        GUARD_OUT(audit_db_last_seq(db, &last));
        out->records = (uint64_t)last;
        if (last > 0 || found)
            broken_at(&w, 1, "the token holds no audit key");
        rv = CKR_OK;
        goto out;
    }
    GUARD_OUT(crypto_hmac_new(MD_SHA256, key, keylen, &w.h));
    GUARD_OUT(audit_db_scan(db, 0, INT64_MIN, INT64_MAX, walk_row, &w));
    if (!w.broken && found)
        GUARD_OUT(check_head(&w, hmac_, htag));
    if (!w.broken && !found)
        out->unsealed_tail = (uint64_t)(w.expect - 1);
    rv = CKR_OK;
out:
    crypto_hmac_free(w.h);
    if (key != NULL) {
        secmem_wipe(key, keylen);
        free(key);
    }
    audit_db_close(db);
    free(path);
    return rv;
}

/* ---- export ------------------------------------------------------------------ */

typedef struct exporter {
    int fd;
    int64_t last;
    char line[AUDIT_JSON_MAX];
} exporter;

static CK_RV write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        ENSURE(w > 0, CKR_FUNCTION_FAILED);
        p += w;
        n -= (size_t)w;
    }
    return CKR_OK;
}

static CK_RV export_row(void *ctx, const audit_row *r, const char *malformed)
{
    exporter *x = ctx;
    size_t n = audit_row_json(r, x->line, sizeof(x->line));
    ENSURE(n > 0, CKR_GENERAL_ERROR);
    GUARD(write_all(x->fd, x->line, n));
    if (r->seq > x->last)
        x->last = r->seq;
    return CKR_OK;
}

CK_RV audit_export(const char *token_path, int64_t since_us, int64_t until_us, int fd,
                   uint64_t after_seq, uint64_t *last_seq)
{
    CK_RV rv;
    char *path = NULL;
    audit_db *db = NULL;
    exporter *x = NULL;

    ENSURE(token_path != NULL && fd >= 0 && after_seq <= INT64_MAX, CKR_ARGUMENTS_BAD);
    if (last_seq != NULL)
        *last_seq = after_seq;
    path = audit_path_for(token_path);
    ENSURE(path != NULL, CKR_HOST_MEMORY);
    rv = CKR_OK;
    if (!exists(path))
        goto out;
    x = malloc(sizeof(*x));
    ENSURE_OUT(x != NULL, CKR_HOST_MEMORY);
    x->fd = fd;
    x->last = (int64_t)after_seq;
    GUARD_OUT(audit_db_open(path, false, &db));
    GUARD_OUT(audit_db_scan(db, (int64_t)after_seq, since_us, until_us, export_row, x));
    if (last_seq != NULL)
        *last_seq = (uint64_t)x->last;
out:
    audit_db_close(db);
    free(x);
    free(path);
    return rv;
}

CK_RV audit_last_seq(const char *token_path, uint64_t *seq)
{
    CK_RV rv;
    audit_db *db = NULL;
    int64_t last = 0;
    char *path;

    ENSURE(token_path != NULL && seq != NULL, CKR_ARGUMENTS_BAD);
    *seq = 0;
    path = audit_path_for(token_path);
    ENSURE(path != NULL, CKR_HOST_MEMORY);
    rv = CKR_OK;
    if (!exists(path))
        goto out;
    GUARD_OUT(audit_db_open(path, false, &db));
    GUARD_OUT(audit_db_last_seq(db, &last));
    *seq = (uint64_t)last;
out:
    audit_db_close(db);
    free(path);
    return rv;
}
