/* format.c -- the envelope's bytes (docs/envelope-format.md sec. 2-3, 8): the
 * strict header and DEK-file parsers, their encoders, the body layout rule,
 * the base64url text form and env_inspect. No token calls, no secrets. */
#include "envelope/internal.h"

#include <stdlib.h>
#include <strings.h>

/* ---- names ------------------------------------------------------------------ */
static const struct {
    env_rv rv;
    const char *msg;
} MESSAGES[] = {
    { ENV_OK, "success" },
    { ENV_E_ARGS, "invalid arguments" },
    { ENV_E_NOMEM, "out of memory" },
    { ENV_E_TRUNCATED, "envelope truncated" },
    { ENV_E_MAGIC, "not a Custos envelope (bad magic)" },
    { ENV_E_VERSION, "unsupported envelope format version" },
    { ENV_E_ALGORITHM, "unknown or unsupported algorithm" },
    { ENV_E_FIELD, "malformed envelope field" },
    { ENV_E_TRAILING, "trailing bytes after the end" },
    { ENV_E_TEXT, "malformed text form" },
    { ENV_E_CONTEXT, "context does not match" },
    { ENV_E_KEY_NOT_FOUND, "key not found" },
    { ENV_E_KEY_AMBIGUOUS, "several keys match" },
    { ENV_E_KEY_MISMATCH, "the key is not the one the envelope names" },
    { ENV_E_UNWRAP, "the data key could not be unwrapped" },
    { ENV_E_HEADER_AUTH, "envelope header failed authentication" },
    { ENV_E_CHUNK_AUTH, "envelope data failed authentication" },
    { ENV_E_TOO_LARGE, "envelope too large" },
    { ENV_E_MECHANISM, "the token offers no usable mechanism" },
    { ENV_E_TOKEN, "token call failed" },
    { ENV_E_IO, "output failed" },
    { ENV_E_STATE, "operation already finished or failed" },
};

const char *env_strerror(env_rv rv)
{
    for (size_t i = 0; i < ARRAY_LEN(MESSAGES); i++)
        if (MESSAGES[i].rv == rv)
            return MESSAGES[i].msg;
    return "unknown error";
}

static const struct {
    unsigned id;
    size_t nonce_len;
    const char *name;
    const char *cli_name;
} AEADS[] = {
    { ENV_AEAD_AES256_GCM, 12, "AES-256-GCM", "aes-256-gcm" },
    { ENV_AEAD_XCHACHA20_POLY1305, 24, "XChaCha20-Poly1305", "xchacha20-poly1305" },
};

env_rv env_aead_from_name(const char *name, unsigned *aead)
{
    ENSURE(name != NULL && aead != NULL, ENV_E_ARGS);
    for (size_t i = 0; i < ARRAY_LEN(AEADS); i++)
        if (strcasecmp(name, AEADS[i].cli_name) == 0) {
            *aead = AEADS[i].id;
            return ENV_OK;
        }
    return ENV_E_ALGORITHM;
}

size_t env_aead_nonce_len(unsigned aead)
{
    for (size_t i = 0; i < ARRAY_LEN(AEADS); i++)
        if (AEADS[i].id == aead)
            return AEADS[i].nonce_len;
    return 0;
}

const char *env_aead_name(unsigned aead)
{
    for (size_t i = 0; i < ARRAY_LEN(AEADS); i++)
        if (AEADS[i].id == aead)
            return AEADS[i].name;
    return "unknown";
}

static const struct {
    CK_MECHANISM_TYPE mech;
    const char *name;
} WRAPS[] = {
    { CKM_AES_KEY_WRAP_KWP, "CKM_AES_KEY_WRAP_KWP" },
    { CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD" },
    { CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP" },
};

bool env_wrap_known(CK_MECHANISM_TYPE mech)
{
    for (size_t i = 0; i < ARRAY_LEN(WRAPS); i++)
        if (WRAPS[i].mech == mech)
            return true;
    return false;
}

const char *env_wrap_name(CK_MECHANISM_TYPE mech)
{
    for (size_t i = 0; i < ARRAY_LEN(WRAPS); i++)
        if (WRAPS[i].mech == mech)
            return WRAPS[i].name;
    return "unknown";
}

bool env_text_field_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
    return true;
}

/* ---- reading ---------------------------------------------------------------- */
typedef struct rd {
    const uint8_t *p;
    size_t n;
    size_t off;
    const char **field;
} rd;

static env_rv fail(rd *r, env_rv rv, const char *field)
{
    if (r->field != NULL)
        *r->field = field;
    return rv;
}

/* A length that points past the bytes present is "truncated": in a stream
 * more bytes may come, in a complete buffer it is the error. */
static env_rv take(rd *r, size_t len, const uint8_t **out, const char *field)
{
    if (r->n - r->off < len)
        return fail(r, ENV_E_TRUNCATED, field);
    *out = r->p + r->off;
    r->off += len;
    return ENV_OK;
}

static env_rv u8(rd *r, uint8_t *v, const char *field)
{
    const uint8_t *p;
    ENV_GUARD(take(r, 1, &p, field));
    *v = p[0];
    return ENV_OK;
}

static env_rv u16(rd *r, size_t *v, const char *field)
{
    const uint8_t *p;
    ENV_GUARD(take(r, 2, &p, field));
    *v = (size_t)be_get(p, 2);
    return ENV_OK;
}

static env_rv u32(rd *r, uint32_t *v, const char *field)
{
    const uint8_t *p;
    ENV_GUARD(take(r, 4, &p, field));
    *v = (uint32_t)be_get(p, 4);
    return ENV_OK;
}

static env_rv magic(rd *r, const char *want)
{
    size_t have = r->n < ENV_MAGIC_LEN ? r->n : ENV_MAGIC_LEN;
    /* Reject garbage as soon as its first bytes differ, even if short. */
    if (memcmp(r->p, want, have) != 0)
        return fail(r, ENV_E_MAGIC, "magic");
    const uint8_t *p;
    ENV_GUARD(take(r, ENV_MAGIC_LEN, &p, "magic"));
    uint8_t version;
    ENV_GUARD(u8(r, &version, "version"));
    if (version != ENV_FORMAT_VERSION)
        return fail(r, ENV_E_VERSION, "version");
    return ENV_OK;
}

/* The key-block fields common to envelopes and DEK files (sec. 2.2).
 * Each limit is checked before the bytes are waited for. */
static env_rv kb_fields(rd *r, env_kb *kb)
{
    const uint8_t *p;
    ENV_GUARD(u16(r, &kb->fam_len, "fam_len"));
    if (kb->fam_len > ENV_FAMILY_MAX)
        return fail(r, ENV_E_FIELD, "fam_len");
    ENV_GUARD(take(r, kb->fam_len, &p, "family"));
    if (!env_text_field_ok(p, kb->fam_len))
        return fail(r, ENV_E_FIELD, "family");
    memcpy(kb->family, p, kb->fam_len);
    ENV_GUARD(u32(r, &kb->kek_version, "kek_version"));
    ENV_GUARD(u32(r, &kb->wrap_mech, "wrap_mech"));
    if (!env_wrap_known(kb->wrap_mech))
        return fail(r, ENV_E_ALGORITHM, "wrap_mech");
    ENV_GUARD(u16(r, &kb->wdek_len, "wdek_len"));
    if (kb->wdek_len < ENV_WDEK_MIN || kb->wdek_len > ENV_WDEK_MAX || kb->wdek_len % 8 != 0)
        return fail(r, ENV_E_FIELD, "wdek_len");
    ENV_GUARD(take(r, kb->wdek_len, &p, "wrapped_dek"));
    memcpy(kb->wdek, p, kb->wdek_len);
    return ENV_OK;
}

env_rv env_hdr_parse(const uint8_t *p, size_t n, env_hdr *h, const char **field)
{
    rd r = { p, n, 0, field };
    const uint8_t *q;
    if (p == NULL || h == NULL)
        return fail(&r, ENV_E_ARGS, "input");
    memset(h, 0, sizeof(*h));
    ENV_GUARD(magic(&r, ENV_MAGIC));
    h->version = ENV_FORMAT_VERSION;
    ENV_GUARD(u8(&r, &h->aead, "aead"));
    h->nonce_len = env_aead_nonce_len(h->aead);
    if (h->nonce_len == 0)
        return fail(&r, ENV_E_ALGORITHM, "aead");
    ENV_GUARD(u8(&r, &h->chunk_shift, "chunk_shift"));
    if (h->chunk_shift < ENV_CHUNK_SHIFT_MIN || h->chunk_shift > ENV_CHUNK_SHIFT_MAX)
        return fail(&r, ENV_E_FIELD, "chunk_shift");
    ENV_GUARD(u8(&r, &h->flags, "flags"));
    if (h->flags != 0)
        return fail(&r, ENV_E_FIELD, "flags");
    ENV_GUARD(take(&r, h->nonce_len, &h->nonce_base, "nonce_base"));
    ENV_GUARD(u16(&r, &h->ctx_len, "ctx_len"));
    if (h->ctx_len > ENV_CONTEXT_MAX)
        return fail(&r, ENV_E_FIELD, "ctx_len");
    ENV_GUARD(take(&r, h->ctx_len, &h->context, "context"));
    if (!env_text_field_ok(h->context, h->ctx_len))
        return fail(&r, ENV_E_FIELD, "context");
    h->data_len = r.off;
    ENV_GUARD(kb_fields(&r, &h->kb));
    ENV_GUARD(take(&r, ENV_KB_NONCE_LEN, &q, "kb_nonce"));
    memcpy(h->kb.kb_nonce, q, ENV_KB_NONCE_LEN);
    ENV_GUARD(take(&r, ENV_TAG_LEN, &q, "kb_tag"));
    memcpy(h->kb.kb_tag, q, ENV_TAG_LEN);
    h->header_len = r.off;
    return ENV_OK;
}

env_rv env_dek_parse(const uint8_t *p, size_t n, env_kb *kb, const char **field)
{
    rd r = { p, n, 0, field };
    if (p == NULL || kb == NULL)
        return fail(&r, ENV_E_ARGS, "input");
    memset(kb, 0, sizeof(*kb));
    ENV_GUARD(magic(&r, ENV_DEK_MAGIC));
    ENV_GUARD(kb_fields(&r, kb));
    kb->dek_aead = ENV_AEAD_AES256_GCM;
    /* One optional byte: the AEAD, stored only when it is not AES-256-GCM
     * (sec. 3), so each DEK file has one encoding. */
    if (n - r.off == 1 && p[r.off] > ENV_AEAD_AES256_GCM) {
        if (env_aead_nonce_len(p[r.off]) == 0)
            return fail(&r, ENV_E_ALGORITHM, "dek_aead");
        kb->dek_aead = p[r.off];
        r.off++;
    }
    if (r.off != n)
        return fail(&r, ENV_E_TRAILING, "end");
    return ENV_OK;
}

/* ---- writing ----------------------------------------------------------------- */
env_rv env_data_hdr_encode(unsigned aead, unsigned shift, const uint8_t *nonce_base,
                           const uint8_t *ctx, size_t ctx_len, uint8_t *out, size_t cap,
                           size_t *len)
{
    size_t nl = env_aead_nonce_len(aead);
    ENSURE(nl != 0, ENV_E_ALGORITHM);
    ENSURE(shift >= ENV_CHUNK_SHIFT_MIN && shift <= ENV_CHUNK_SHIFT_MAX, ENV_E_FIELD);
    ENSURE(ctx_len <= ENV_CONTEXT_MAX && env_text_field_ok(ctx, ctx_len), ENV_E_FIELD);
    size_t need = ENV_MAGIC_LEN + 4 + nl + 2 + ctx_len;
    ENSURE(cap >= need, ENV_E_ARGS);
    memcpy(out, ENV_MAGIC, ENV_MAGIC_LEN);
    out[4] = ENV_FORMAT_VERSION;
    out[5] = (uint8_t)aead;
    out[6] = (uint8_t)shift;
    out[7] = 0;
    memcpy(out + 8, nonce_base, nl);
    be_put(out + 8 + nl, (uint32_t)ctx_len, 2);
    if (ctx_len > 0)
        memcpy(out + 10 + nl, ctx, ctx_len);
    *len = need;
    return ENV_OK;
}

static env_rv kb_fields_encode(const env_kb *kb, uint8_t *out, size_t cap, size_t *len)
{
    ENSURE(kb->fam_len <= ENV_FAMILY_MAX && env_text_field_ok(kb->family, kb->fam_len),
           ENV_E_FIELD);
    ENSURE(env_wrap_known(kb->wrap_mech), ENV_E_ALGORITHM);
    ENSURE(kb->wdek_len >= ENV_WDEK_MIN && kb->wdek_len <= ENV_WDEK_MAX && kb->wdek_len % 8 == 0,
           ENV_E_FIELD);
    size_t need = 2 + kb->fam_len + 4 + 4 + 2 + kb->wdek_len;
    ENSURE(cap >= need, ENV_E_ARGS);
    size_t o = 0;
    be_put(out + o, (uint32_t)kb->fam_len, 2);
    o += 2;
    memcpy(out + o, kb->family, kb->fam_len);
    o += kb->fam_len;
    be_put(out + o, kb->kek_version, 4);
    o += 4;
    be_put(out + o, kb->wrap_mech, 4);
    o += 4;
    be_put(out + o, (uint32_t)kb->wdek_len, 2);
    o += 2;
    memcpy(out + o, kb->wdek, kb->wdek_len);
    *len = o + kb->wdek_len;
    return ENV_OK;
}

env_rv env_kb_encode(const env_kb *kb, uint8_t *out, size_t cap, size_t *len, size_t *aad_len)
{
    size_t n;
    ENV_GUARD(kb_fields_encode(kb, out, cap, &n));
    ENSURE(cap - n >= ENV_KB_NONCE_LEN + ENV_TAG_LEN, ENV_E_ARGS);
    memcpy(out + n, kb->kb_nonce, ENV_KB_NONCE_LEN);
    memcpy(out + n + ENV_KB_NONCE_LEN, kb->kb_tag, ENV_TAG_LEN);
    *aad_len = n;
    *len = n + ENV_KB_NONCE_LEN + ENV_TAG_LEN;
    return ENV_OK;
}

env_rv env_dek_encode(const env_kb *kb, uint8_t **out, size_t *len)
{
    uint8_t buf[ENV_MAGIC_LEN + 1 + 2 + ENV_FAMILY_MAX + 4 + 4 + 2 + ENV_WDEK_MAX + 1];
    size_t n;
    ENSURE(kb->dek_aead == 0 || env_aead_nonce_len(kb->dek_aead) != 0, ENV_E_ALGORITHM);
    memcpy(buf, ENV_DEK_MAGIC, ENV_MAGIC_LEN);
    buf[ENV_MAGIC_LEN] = ENV_FORMAT_VERSION;
    ENV_GUARD(kb_fields_encode(kb, buf + ENV_MAGIC_LEN + 1, sizeof(buf) - ENV_MAGIC_LEN - 2, &n));
    n += ENV_MAGIC_LEN + 1;
    if (kb->dek_aead > ENV_AEAD_AES256_GCM)
        buf[n++] = kb->dek_aead;
    *out = malloc(n);
    ENSURE(*out != NULL, ENV_E_NOMEM);
    memcpy(*out, buf, n);
    *len = n;
    return ENV_OK;
}

env_rv env_body_layout(uint64_t body_len, unsigned shift, uint64_t *nchunks)
{
    ENSURE(shift >= ENV_CHUNK_SHIFT_MIN && shift <= ENV_CHUNK_SHIFT_MAX, ENV_E_FIELD);
    uint64_t piece = ((uint64_t)1 << shift) + ENV_TAG_LEN;
    uint64_t full = body_len / piece, rem = body_len % piece;
    ENSURE(body_len > 0, ENV_E_TRUNCATED);
    ENSURE(rem == 0 || rem >= ENV_TAG_LEN, ENV_E_TRUNCATED);
    uint64_t n = full + (rem != 0);
    /* The writer never emits an empty final chunk after index 0 (sec. 2.3). */
    ENSURE(!(rem == ENV_TAG_LEN && n > 1), ENV_E_FIELD);
    ENSURE(n - 1 <= ENV_CHUNK_INDEX_MAX, ENV_E_TOO_LARGE);
    *nchunks = n;
    return ENV_OK;
}

/* ---- text form (RFC 4648 sec. 5, no padding) -------------------------------- */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t env_b64_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

void env_b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
    }
    out[o] = '\0';
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

env_rv env_b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    ENSURE(n % 4 != 1, ENV_E_TEXT);
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(in[i]);
        ENSURE(v >= 0, ENV_E_TEXT);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* The unused low bits must be zero: one text form per envelope. */
    ENSURE((acc & ((1u << bits) - 1)) == 0, ENV_E_TEXT);
    *out_len = o;
    return ENV_OK;
}

env_rv env_to_text(const uint8_t *bin, size_t len, char **text)
{
    ENSURE(bin != NULL && text != NULL && len >= ENV_MAGIC_LEN, ENV_E_ARGS);
    const char *prefix;
    if (memcmp(bin, ENV_MAGIC, ENV_MAGIC_LEN) == 0)
        prefix = ENV_TEXT_PREFIX;
    else if (memcmp(bin, ENV_DEK_MAGIC, ENV_MAGIC_LEN) == 0)
        prefix = ENV_DEK_TEXT_PREFIX;
    else
        return ENV_E_MAGIC;
    size_t pl = strlen(prefix), bl = env_b64_len(len);
    ENSURE(pl + bl <= ENV_TEXT_MAX, ENV_E_TOO_LARGE);
    char *t = malloc(pl + bl + 1);
    ENSURE(t != NULL, ENV_E_NOMEM);
    memcpy(t, prefix, pl);
    env_b64_encode(bin, len, t + pl);
    *text = t;
    return ENV_OK;
}

env_rv env_from_text(const char *text, size_t len, uint8_t **bin, size_t *bin_len)
{
    env_rv rv = ENV_OK;
    uint8_t *b = NULL;
    size_t n = 0;
    const char *magic_want;
    size_t pl;
    ENSURE(text != NULL && bin != NULL && bin_len != NULL, ENV_E_ARGS);
    ENSURE(len <= ENV_TEXT_MAX, ENV_E_TOO_LARGE);
    if (len >= strlen(ENV_TEXT_PREFIX) && memcmp(text, ENV_TEXT_PREFIX, strlen(ENV_TEXT_PREFIX)) == 0) {
        pl = strlen(ENV_TEXT_PREFIX);
        magic_want = ENV_MAGIC;
    } else if (len >= strlen(ENV_DEK_TEXT_PREFIX) &&
               memcmp(text, ENV_DEK_TEXT_PREFIX, strlen(ENV_DEK_TEXT_PREFIX)) == 0) {
        pl = strlen(ENV_DEK_TEXT_PREFIX);
        magic_want = ENV_DEK_MAGIC;
    } else {
        return ENV_E_TEXT;
    }
    b = malloc((len - pl) / 4 * 3 + 3);
    ENSURE_OUT(b != NULL, ENV_E_NOMEM);
    GUARD_OUT(env_b64_decode(text + pl, len - pl, b, &n));
    ENSURE_OUT(n >= ENV_MAGIC_LEN && memcmp(b, magic_want, ENV_MAGIC_LEN) == 0, ENV_E_TEXT);
    *bin = b;
    *bin_len = n;
    b = NULL;
out:
    free(b);
    return rv;
}

/* ---- inspect ------------------------------------------------------------------ */
static void info_kb(env_info *info, const env_kb *kb)
{
    memcpy(info->family, kb->family, kb->fam_len);
    info->family[kb->fam_len] = '\0';
    info->kek_version = kb->kek_version;
    info->wrap_mech = kb->wrap_mech;
    info->wrap_name = env_wrap_name(kb->wrap_mech);
    info->wrapped_dek_len = kb->wdek_len;
}

env_rv env_inspect(const uint8_t *data, size_t len, env_info *info)
{
    ENSURE(data != NULL && info != NULL, ENV_E_ARGS);
    memset(info, 0, sizeof(*info));
    info->aead_name = "none";
    if (len >= ENV_MAGIC_LEN && memcmp(data, ENV_DEK_MAGIC, ENV_MAGIC_LEN) == 0) {
        env_kb kb;
        ENV_GUARD(env_dek_parse(data, len, &kb, NULL));
        info->is_dek_file = 1;
        info->format_version = ENV_FORMAT_VERSION;
        info->aead = kb.dek_aead;
        info->aead_name = env_aead_name(kb.dek_aead);
        info->header_len = len;
        info_kb(info, &kb);
        return ENV_OK;
    }
    env_hdr h;
    ENV_GUARD(env_hdr_parse(data, len, &h, NULL));
    info->format_version = h.version;
    info->aead = h.aead;
    info->aead_name = env_aead_name(h.aead);
    info->chunk_size = (size_t)1 << h.chunk_shift;
    memcpy(info->context, h.context, h.ctx_len);
    info->context[h.ctx_len] = '\0';
    info->context_len = h.ctx_len;
    info->header_len = h.header_len;
    info_kb(info, &h.kb);
    return ENV_OK;
}
