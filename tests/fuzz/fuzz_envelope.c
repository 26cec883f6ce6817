/* fuzz_envelope.c -- libFuzzer harness of the envelope format
 * (src/envelope/, docs/envelope-format.md): the header and DEK-file parsers,
 * env_inspect, the text form, and the streaming reader, re-wrap and seal
 * driven through a mock token, each checked against the format's rules. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope/internal.h"
#include "custos.h"
#include "fuzz.h"

#define KEK_HANDLE 1
#define DEK_HANDLE 2
#define WDEK_LEN 40
#define PT_MAX 3000

/* ---- the mock token ----------------------------------------------------------
 * Identity "AEAD": ciphertext = plaintext || tag, and a tag is bad when its
 * last byte is 0xFF; a wrapped DEK whose first byte is 0xFF does not unwrap.
 * Every KEK found answers with the family and version of the key block
 * under test. Each call checks what the library asks of it (sec. 4-5). */
static struct mock {
    uint8_t fam[ENV_FAMILY_MAX];
    size_t fam_len;
    uint32_t version;
    bool chacha;            /* the slot lists the ChaCha20 mechanisms */
    bool ambiguous;         /* two KEKs answer to the name */
    int live;               /* DEKs made and not yet destroyed */
    /* opening: the envelope being read */
    bool opening;
    const env_hdr *h;
    uint64_t body_len;
    uint64_t next_index;
    bool final_seen;
    /* the last C_DecryptInit / C_EncryptInit */
    CK_MECHANISM_TYPE mech;
    const uint8_t *nonce, *aad;
    size_t nonce_len, aad_len;
} M;

static CK_RV m_session_info(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
    memset(info, 0, sizeof(*info));
    return CKR_OK;
}

static CK_RV m_mech_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
    static const CK_MECHANISM_TYPE ALL[] = { CKM_AES_GCM, CKM_AES_KEY_WRAP_KWP,
                                             CKM_CHACHA20_POLY1305, CKM_CHACHA20_KEY_GEN };
    CK_ULONG have = M.chacha ? 4 : 2;
    if (list != NULL) {
        if (*n < have)
            return CKR_BUFFER_TOO_SMALL;
        memcpy(list, ALL, have * sizeof(*list));
    }
    *n = have;
    return CKR_OK;
}

static CK_RV m_find_init(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    return CKR_OK;
}

static CK_RV m_find(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR hs, CK_ULONG max, CK_ULONG_PTR n)
{
    CK_ULONG want = M.ambiguous ? 2 : 1;
    *n = want < max ? want : max;
    for (CK_ULONG i = 0; i < *n; i++)
        hs[i] = KEK_HANDLE + 10 * i;
    return CKR_OK;
}

static CK_RV m_find_final(CK_SESSION_HANDLE s)
{
    return CKR_OK;
}

static CK_RV give(CK_ATTRIBUTE *a, const void *v, size_t len)
{
    if (a->pValue == NULL) {
        a->ulValueLen = len;
        return CKR_OK;
    }
    if (a->ulValueLen < len) {
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(a->pValue, v, len);
    a->ulValueLen = len;
    return CKR_OK;
}

static CK_RV m_get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    CK_RV rv = CKR_OK;
    FUZZ_CHECK(h == KEK_HANDLE || h == KEK_HANDLE + 10);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG v = M.version;
        CK_RV r = CKR_ATTRIBUTE_TYPE_INVALID;
        if (t[i].type == CKA_CUSTOS_FAMILY || t[i].type == CKA_LABEL)
            r = give(&t[i], M.fam, M.fam_len);
        else if (t[i].type == CKA_CUSTOS_VERSION)
            r = give(&t[i], &v, sizeof(v));
        else
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        if (rv == CKR_OK)
            rv = r;
    }
    return rv;
}

static CK_RV m_unwrap(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE kek,
                      CK_BYTE_PTR w, CK_ULONG wl, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                      CK_OBJECT_HANDLE_PTR dek)
{
    FUZZ_CHECK(env_wrap_known(m->mechanism) && wl >= ENV_WDEK_MIN && wl <= ENV_WDEK_MAX);
    if (w[0] == 0xFF)
        return CKR_WRAPPED_KEY_INVALID;
    M.live++;
    *dek = DEK_HANDLE;
    return CKR_OK;
}

static CK_RV m_wrap(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE kek,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR n)
{
    FUZZ_CHECK(kek == KEK_HANDLE && key == DEK_HANDLE && out != NULL);
    if (*n < WDEK_LEN)
        return CKR_BUFFER_TOO_SMALL;
    memset(out, 0x11, WDEK_LEN);
    *n = WDEK_LEN;
    return CKR_OK;
}

static CK_RV m_destroy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    FUZZ_CHECK(h == DEK_HANDLE && M.live > 0);
    M.live--;
    return CKR_OK;
}

static CK_RV m_random(CK_SESSION_HANDLE s, CK_BYTE_PTR p, CK_ULONG n)
{
    memset(p, 0x22, n);
    return CKR_OK;
}

static CK_RV m_digest_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m)
{
    FUZZ_CHECK(m->mechanism == CKM_SHA256);
    return CKR_OK;
}

/* D is all zeros: the checks below know it. */
static CK_RV m_digest(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out,
                      CK_ULONG_PTR ol)
{
    FUZZ_CHECK(out != NULL && *ol >= ENV_DIGEST_LEN);
    memset(out, 0, ENV_DIGEST_LEN);
    *ol = ENV_DIGEST_LEN;
    return CKR_OK;
}

static CK_RV aead_init(CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    FUZZ_CHECK(key == DEK_HANDLE && M.live > 0);
    M.mech = m->mechanism;
    if (m->mechanism == CKM_AES_GCM) {
        const CK_GCM_PARAMS *p = m->pParameter;
        FUZZ_CHECK(m->ulParameterLen == sizeof(*p) && p->ulIvLen == 12 && p->ulIvBits == 96 &&
                   p->ulTagBits == 128);
        M.nonce = p->pIv;
        M.nonce_len = p->ulIvLen;
        M.aad = p->pAAD;
        M.aad_len = p->ulAADLen;
    } else {
        const CK_SALSA20_CHACHA20_POLY1305_PARAMS *p = m->pParameter;
        FUZZ_CHECK(m->mechanism == CKM_CHACHA20_POLY1305 && M.chacha);
        FUZZ_CHECK(m->ulParameterLen == sizeof(*p) && p->ulNonceLen == 192);
        M.nonce = p->pNonce;
        M.nonce_len = 24;
        M.aad = p->pAAD;
        M.aad_len = p->ulAADLen;
    }
    return CKR_OK;
}

static CK_RV m_encrypt_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    return aead_init(m, key);
}

static CK_RV m_encrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out,
                       CK_ULONG_PTR ol)
{
    FUZZ_CHECK(in != NULL && out != NULL && *ol >= n + ENV_TAG_LEN);
    memmove(out, in, n);
    memset(out + n, 0, ENV_TAG_LEN);
    *ol = n + ENV_TAG_LEN;
    return CKR_OK;
}

static CK_RV m_decrypt_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    return aead_init(m, key);
}

/* A chunk of the envelope being opened: its index, final flag, nonce and
 * AAD must be the ones sec. 4 gives for its place in the body. */
static void check_chunk(void)
{
    const env_hdr *h = M.h;
    uint64_t i = M.next_index++;
    uint64_t piece = ((uint64_t)1 << h->chunk_shift) + ENV_TAG_LEN;
    uint8_t be[4];
    FUZZ_CHECK(!M.final_seen);
    FUZZ_CHECK(M.mech == (h->aead == ENV_AEAD_AES256_GCM ? CKM_AES_GCM : CKM_CHACHA20_POLY1305));
    FUZZ_CHECK(M.aad_len == ENV_DIGEST_LEN + 5 + h->ctx_len);
    for (size_t k = 0; k < ENV_DIGEST_LEN; k++)
        FUZZ_CHECK(M.aad[k] == 0);
    be_put(be, (uint32_t)i, 4);
    FUZZ_CHECK(memcmp(M.aad + ENV_DIGEST_LEN, be, 4) == 0);
    bool final = M.aad[ENV_DIGEST_LEN + 4] == 1;
    FUZZ_CHECK(final || M.aad[ENV_DIGEST_LEN + 4] == 0);
    /* Final exactly when no byte of the body follows this chunk. */
    FUZZ_CHECK(final == ((i + 1) * piece >= M.body_len));
    FUZZ_CHECK(memcmp(M.aad + ENV_DIGEST_LEN + 5, h->context, h->ctx_len) == 0);
    FUZZ_CHECK(M.nonce_len == h->nonce_len);
    FUZZ_CHECK(memcmp(M.nonce, h->nonce_base, h->nonce_len - 4) == 0);
    for (size_t k = 0; k < 4; k++)
        FUZZ_CHECK((M.nonce[h->nonce_len - 4 + k] ^ h->nonce_base[h->nonce_len - 4 + k]) == be[k]);
    M.final_seen = final;
}

static CK_RV m_decrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out,
                       CK_ULONG_PTR ol)
{
    FUZZ_CHECK(in != NULL && n >= ENV_TAG_LEN && out != NULL && *ol >= n - ENV_TAG_LEN);
    bool kb = M.aad_len >= ENV_KB_LABEL_LEN && memcmp(M.aad, ENV_KB_LABEL, ENV_KB_LABEL_LEN) == 0;
    if (kb)
        FUZZ_CHECK(n == ENV_TAG_LEN);
    else if (M.opening)
        check_chunk();
    if (in[n - 1] == 0xFF)
        return CKR_ENCRYPTED_DATA_INVALID;
    memmove(out, in, n - ENV_TAG_LEN);
    *ol = n - ENV_TAG_LEN;
    return CKR_OK;
}

static CK_FUNCTION_LIST TOKEN;

static void mock_token_init(void)
{
    TOKEN.C_GetSessionInfo = m_session_info;
    TOKEN.C_GetMechanismList = m_mech_list;
    TOKEN.C_FindObjectsInit = m_find_init;
    TOKEN.C_FindObjects = m_find;
    TOKEN.C_FindObjectsFinal = m_find_final;
    TOKEN.C_GetAttributeValue = m_get_attr;
    TOKEN.C_UnwrapKey = m_unwrap;
    TOKEN.C_WrapKey = m_wrap;
    TOKEN.C_DestroyObject = m_destroy;
    TOKEN.C_GenerateRandom = m_random;
    TOKEN.C_DigestInit = m_digest_init;
    TOKEN.C_Digest = m_digest;
    TOKEN.C_EncryptInit = m_encrypt_init;
    TOKEN.C_Encrypt = m_encrypt;
    TOKEN.C_DecryptInit = m_decrypt_init;
    TOKEN.C_Decrypt = m_decrypt;
}

/* The mock answers for this key block; the knobs come from a hash of the
 * input so that every mutation explores another combination. */
static void mock_reset(const env_kb *kb, uint32_t knobs)
{
    memset(&M, 0, sizeof(M));
    if (kb != NULL) {
        memcpy(M.fam, kb->family, kb->fam_len);
        M.fam_len = kb->fam_len;
        M.version = kb->kek_version;
    }
    M.chacha = (knobs & 7) != 0;
    M.ambiguous = (knobs >> 3 & 15) == 0;
}

/* ---- helpers ---------------------------------------------------------------- */
typedef struct sinkbuf {
    uint8_t *p;
    size_t len, cap;
} sinkbuf;

static int sink(void *arg, const uint8_t *data, size_t len)
{
    sinkbuf *b = arg;
    if (len > b->cap - b->len) {
        size_t cap = (b->len + len) * 2 + 64;
        uint8_t *p = realloc(b->p, cap);
        FUZZ_CHECK(p != NULL);
        b->p = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static bool starts(const uint8_t *p, size_t n, const char *magic)
{
    return n >= ENV_MAGIC_LEN && memcmp(p, magic, ENV_MAGIC_LEN) == 0;
}

/* ---- the formats ---------------------------------------------------------------- */

/* A parsed header is in range and is the one encoding of its fields (sec. 2:
 * "one valid encoding per envelope"); every shorter prefix is truncated. */
static void check_header(const uint8_t *data, size_t size, const env_hdr *h, uint32_t knobs)
{
    uint8_t enc[ENV_HEADER_MAX];
    size_t dl, kl, aad;
    FUZZ_CHECK(h->header_len <= size && h->header_len <= ENV_HEADER_MAX);
    FUZZ_CHECK(h->data_len < h->header_len);
    FUZZ_CHECK(h->chunk_shift >= ENV_CHUNK_SHIFT_MIN && h->chunk_shift <= ENV_CHUNK_SHIFT_MAX);
    FUZZ_CHECK(h->ctx_len <= ENV_CONTEXT_MAX && h->kb.fam_len <= ENV_FAMILY_MAX);
    FUZZ_CHECK(env_data_hdr_encode(h->aead, h->chunk_shift, h->nonce_base, h->context, h->ctx_len,
                                   enc, sizeof(enc), &dl) == ENV_OK);
    FUZZ_CHECK(dl == h->data_len);
    FUZZ_CHECK(env_kb_encode(&h->kb, enc + dl, sizeof(enc) - dl, &kl, &aad) == ENV_OK);
    FUZZ_CHECK(dl + kl == h->header_len && memcmp(enc, data, h->header_len) == 0);
    env_hdr h2;
    FUZZ_CHECK(env_hdr_parse(data, h->header_len - 1, &h2, NULL) == ENV_E_TRUNCATED);
    FUZZ_CHECK(env_hdr_parse(data, knobs % h->header_len, &h2, NULL) == ENV_E_TRUNCATED);
}

static void check_dek(const uint8_t *data, size_t size, const env_kb *kb)
{
    uint8_t *enc = NULL;
    size_t n = 0;
    FUZZ_CHECK(env_dek_encode(kb, &enc, &n) == ENV_OK);
    FUZZ_CHECK(n == size && memcmp(enc, data, n) == 0);
    free(enc);
}

static void check_inspect(const uint8_t *data, size_t size, env_rv hrv, const env_hdr *h,
                          env_rv drv, const env_kb *kb)
{
    env_info info;
    env_rv rv = env_inspect(data, size, &info);
    bool dek = starts(data, size, ENV_DEK_MAGIC);
    FUZZ_CHECK(rv == (dek ? drv : hrv));
    if (rv != ENV_OK)
        return;
    const env_kb *k = dek ? kb : &h->kb;
    FUZZ_CHECK(info.is_dek_file == dek && info.format_version == ENV_FORMAT_VERSION);
    FUZZ_CHECK(strlen(info.family) == k->fam_len && memcmp(info.family, k->family, k->fam_len) == 0);
    FUZZ_CHECK(info.kek_version == k->kek_version && info.wrap_mech == k->wrap_mech);
    FUZZ_CHECK(info.wrapped_dek_len == k->wdek_len);
    FUZZ_CHECK(info.aead_name != NULL && info.wrap_name != NULL);
    if (dek) {
        FUZZ_CHECK(info.header_len == size);
        return;
    }
    FUZZ_CHECK(info.header_len == h->header_len && info.context_len == h->ctx_len);
    FUZZ_CHECK(info.context[h->ctx_len] == '\0' && memcmp(info.context, h->context, h->ctx_len) == 0);
    FUZZ_CHECK(info.chunk_size == (size_t)1 << h->chunk_shift);
}

/* Sec. 3: the decoder is strict, so a decoded text has exactly one text
 * form; and binary -> text -> binary is the identity. */
static void check_text(const uint8_t *data, size_t size)
{
    uint8_t *bin = NULL;
    size_t bl = 0;
    char *text = NULL;
    if (env_from_text((const char *)data, size, &bin, &bl) == ENV_OK) {
        FUZZ_CHECK(starts(bin, bl, ENV_MAGIC) || starts(bin, bl, ENV_DEK_MAGIC));
        FUZZ_CHECK(env_to_text(bin, bl, &text) == ENV_OK);
        FUZZ_CHECK(strlen(text) == size && memcmp(text, data, size) == 0);
        env_info info;
        (void)env_inspect(bin, bl, &info);
        free(text);
        free(bin);
    }
    if (env_to_text(data, size, &text) != ENV_OK) {
        FUZZ_CHECK(!starts(data, size, ENV_MAGIC) && !starts(data, size, ENV_DEK_MAGIC));
        return;
    }
    FUZZ_CHECK(env_from_text(text, strlen(text), &bin, &bl) == ENV_OK);
    FUZZ_CHECK(bl == size && memcmp(bin, data, size) == 0);
    free(bin);
    free(text);
}

/* ---- opening ------------------------------------------------------------------- */

/* What opening must give under the mock, worked out from the format alone
 * (sec. 2.3 body layout, sec. 7 order of checks), and how many plaintext
 * bytes verified chunks release before that. */
static env_rv expect_open(const uint8_t *data, size_t size, const char *expect, bool kek_given,
                          size_t *released)
{
    env_hdr h;
    *released = 0;
    env_rv rv = env_hdr_parse(data, size, &h, NULL);
    if (rv != ENV_OK)
        return rv;
    if (expect != NULL && (strlen(expect) != h.ctx_len || memcmp(expect, h.context, h.ctx_len) != 0))
        return ENV_E_CONTEXT;
    if (h.aead == ENV_AEAD_XCHACHA20_POLY1305 && !M.chacha)
        return ENV_E_MECHANISM;
    if (M.ambiguous && !kek_given)
        return ENV_E_KEY_AMBIGUOUS;
    if (h.kb.wdek[0] == 0xFF)
        return ENV_E_UNWRAP;
    if (h.kb.kb_tag[ENV_TAG_LEN - 1] == 0xFF)
        return ENV_E_HEADER_AUTH;
    const uint8_t *body = data + h.header_len;
    size_t len = size - h.header_len, piece = ((size_t)1 << h.chunk_shift) + ENV_TAG_LEN, off = 0;
    for (; len - off > piece; off += piece) {
        if (body[off + piece - 1] == 0xFF)
            return ENV_E_CHUNK_AUTH;
        *released += piece - ENV_TAG_LEN;
    }
    size_t rem = len - off;
    if (rem < ENV_TAG_LEN)
        return ENV_E_TRUNCATED;
    if (rem == ENV_TAG_LEN && off > 0)
        return ENV_E_FIELD;
    if (body[len - 1] == 0xFF)
        return ENV_E_CHUNK_AUTH;
    *released += rem - ENV_TAG_LEN;
    return ENV_OK;
}

/* The plaintext the identity AEAD releases: the body without its tags. */
static bool released_ok(const uint8_t *data, const env_hdr *h, const sinkbuf *out)
{
    size_t c = (size_t)1 << h->chunk_shift;
    const uint8_t *body = data + h->header_len;
    for (size_t off = 0; off < out->len; off += c) {
        size_t n = out->len - off < c ? out->len - off : c;
        if (memcmp(out->p + off, body + off / c * (c + ENV_TAG_LEN), n) != 0)
            return false;
    }
    return true;
}

/* Feed the envelope in pieces of pseudo-random sizes. */
static env_rv open_stream(env_ctx *c, const char *expect, const uint8_t *data, size_t size,
                          uint32_t seed, sinkbuf *out)
{
    env_reader *r = NULL;
    FUZZ_CHECK(env_open_begin(c, expect, sink, out, &r) == ENV_OK);
    for (size_t off = 0; off < size;) {
        seed = seed * 1103515245u + 12345u;
        size_t step = 1 + (seed >> 8) % ((seed & 0x80) ? 2048 : 48);
        if (step > size - off)
            step = size - off;
        env_rv rv = env_open_update(r, data + off, step);
        if (rv != ENV_OK) {
            FUZZ_CHECK(env_open_update(r, data, 0) == ENV_E_STATE);
            env_open_abort(r);
            return rv;
        }
        off += step;
    }
    return env_open_final(r);
}

static void check_open(env_ctx *c, const uint8_t *data, size_t size, const env_hdr *h,
                       bool parsed, uint32_t knobs)
{
    static const char *const OTHER = "another context";
    const char *expect = NULL;
    char own[ENV_CONTEXT_MAX + 1];
    if (parsed && (knobs >> 7) % 4 == 1) {
        memcpy(own, h->context, h->ctx_len);
        own[h->ctx_len] = '\0';
        expect = own;
    } else if ((knobs >> 7) % 4 == 2) {
        expect = OTHER;
    }
    /* With the KEK given, the header must name it; without, it is found. */
    bool kek_given = knobs & 0x10000;
    env_ctx_set_kek(c, kek_given ? KEK_HANDLE : CK_INVALID_HANDLE);
    size_t released;
    mock_reset(parsed ? &h->kb : NULL, knobs);
    env_rv want = expect_open(data, size, expect, kek_given, &released);

    for (int pass = 0; pass < 2; pass++) {
        sinkbuf out = { NULL, 0, 0 };
        mock_reset(parsed ? &h->kb : NULL, knobs);
        M.opening = true;
        M.h = h;
        M.body_len = parsed ? size - h->header_len : 0;
        env_rv rv;
        if (pass == 0) {
            rv = open_stream(c, expect, data, size, knobs, &out);
        } else {
            uint8_t *pt = NULL;
            size_t pl = 0;
            rv = env_open_buf(c, expect, data, size, &pt, &pl);
            if (rv == ENV_OK)
                FUZZ_CHECK(sink(&out, pt, pl) == 0);
            env_free(pt, pl);
        }
        FUZZ_CHECK(rv == want);
        FUZZ_CHECK(M.live == 0);
        /* Only verified chunks, all of them (the one-shot call drops what
         * came before a failure). */
        FUZZ_CHECK(out.len == (rv == ENV_OK || pass == 0 ? released : 0));
        if (out.len > 0)
            FUZZ_CHECK(released_ok(data, h, &out));
        FUZZ_CHECK(rv != ENV_OK || M.final_seen);
        free(out.p);
    }
    env_ctx_set_kek(c, KEK_HANDLE);
}

/* Re-wrap replaces the key block only (sec. 5): data header and body stay. */
static void check_rewrap(env_ctx *c, const uint8_t *data, size_t size, env_rv hrv,
                         const env_hdr *h, uint32_t knobs)
{
    uint8_t *out = NULL;
    size_t ol = 0;
    mock_reset(hrv == ENV_OK ? &h->kb : NULL, knobs);
    env_rv rv = env_rewrap_buf(c, CK_INVALID_HANDLE, data, size, &out, &ol);
    FUZZ_CHECK(M.live == 0);
    env_rv want = hrv;
    if (want == ENV_OK) {
        if (h->aead == ENV_AEAD_XCHACHA20_POLY1305 && !M.chacha)
            want = ENV_E_MECHANISM;
        else if (M.ambiguous)
            want = ENV_E_KEY_AMBIGUOUS;
        else if (h->kb.wdek[0] == 0xFF)
            want = ENV_E_UNWRAP;
        else if (h->kb.kb_tag[ENV_TAG_LEN - 1] == 0xFF)
            want = ENV_E_HEADER_AUTH;
    }
    FUZZ_CHECK(rv == want);
    if (rv != ENV_OK)
        return;
    env_hdr n;
    FUZZ_CHECK(env_hdr_parse(out, ol, &n, NULL) == ENV_OK);
    FUZZ_CHECK(n.data_len == h->data_len && memcmp(out, data, h->data_len) == 0);
    FUZZ_CHECK(ol - n.header_len == size - h->header_len);
    FUZZ_CHECK(memcmp(out + n.header_len, data + h->header_len, size - h->header_len) == 0);
    FUZZ_CHECK(n.kb.fam_len == h->kb.fam_len && n.kb.kek_version == h->kb.kek_version);
    FUZZ_CHECK(n.kb.wrap_mech == CKM_AES_KEY_WRAP_KWP && n.kb.wdek_len == WDEK_LEN);
    free(out);
}

/* A DEK file: re-wrap keeps its AEAD; sealing with it and opening the
 * result gives the plaintext back. */
static void check_dek_use(env_ctx *c, const uint8_t *data, size_t size, const env_kb *kb,
                          uint32_t knobs)
{
    uint8_t *out = NULL, *env = NULL, *pt = NULL;
    size_t ol = 0, el = 0, pl = 0;
    unsigned alg = kb->dek_aead == 0 ? ENV_AEAD_AES256_GCM : kb->dek_aead;
    env_rv want = ENV_OK;
    if (M.ambiguous)
        want = ENV_E_KEY_AMBIGUOUS;
    else if (kb->wdek[0] == 0xFF)
        want = ENV_E_UNWRAP;

    mock_reset(kb, knobs);
    FUZZ_CHECK(env_dek_rewrap(c, CK_INVALID_HANDLE, data, size, &out, &ol) == want);
    FUZZ_CHECK(M.live == 0);
    if (want == ENV_OK) {
        env_kb n;
        FUZZ_CHECK(env_dek_parse(out, ol, &n, NULL) == ENV_OK);
        FUZZ_CHECK(n.dek_aead == kb->dek_aead && n.kek_version == kb->kek_version);
        free(out);
    }

    /* Sealing names the context's KEK: no lookup, so no ambiguity. */
    uint8_t msg[PT_MAX];
    size_t ml = knobs % PT_MAX;
    for (size_t i = 0; i < ml; i++)
        msg[i] = (uint8_t)(i * 7 + 1);
    want = ENV_OK;
    if (alg == ENV_AEAD_XCHACHA20_POLY1305 && !M.chacha)
        want = ENV_E_MECHANISM;
    else if (kb->wdek[0] == 0xFF)
        want = ENV_E_UNWRAP;
    FUZZ_CHECK(env_ctx_set_chunk_shift(c, ENV_CHUNK_SHIFT_MIN) == ENV_OK);
    mock_reset(kb, knobs);
    FUZZ_CHECK(env_seal_buf(c, "fuzz", data, size, msg, ml, &env, &el) == want);
    FUZZ_CHECK(M.live == 0);
    if (want != ENV_OK)
        return;
    env_hdr h;
    FUZZ_CHECK(env_hdr_parse(env, el, &h, NULL) == ENV_OK && h.aead == alg);
    mock_reset(kb, knobs);
    M.opening = true;
    M.h = &h;
    M.body_len = el - h.header_len;
    FUZZ_CHECK(env_open_buf(c, "fuzz", env, el, &pt, &pl) == ENV_OK);
    FUZZ_CHECK(pl == ml && (ml == 0 || memcmp(pt, msg, ml) == 0));
    FUZZ_CHECK(M.live == 0);
    env_free(pt, pl);
    free(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    env_hdr h;
    env_kb kb;
    const char *field = NULL;
    uint32_t knobs = fnv(data, size);

    env_rv hrv = env_hdr_parse(data, size, &h, &field);
    FUZZ_CHECK(hrv == ENV_OK || field != NULL);
    if (hrv == ENV_OK)
        check_header(data, size, &h, knobs);
    env_rv drv = env_dek_parse(data, size, &kb, NULL);
    if (drv == ENV_OK)
        check_dek(data, size, &kb);
    check_inspect(data, size, hrv, &h, drv, &kb);
    check_text(data, size);

    env_ctx *c = NULL;
    FUZZ_CHECK(env_ctx_new(&TOKEN, 1, KEK_HANDLE, &c) == ENV_OK);
    check_open(c, data, size, &h, hrv == ENV_OK, knobs);
    check_rewrap(c, data, size, hrv, &h, knobs);
    if (drv == ENV_OK)
        check_dek_use(c, data, size, &kb, knobs);
    env_ctx_free(c);
    return 0;
}

/* ---- seeds ----------------------------------------------------------------------- */
static size_t make_env(uint8_t *out, unsigned aead, unsigned shift, const char *ctx,
                       const char *fam, uint32_t version, CK_MECHANISM_TYPE wrap, size_t wdek_len,
                       size_t pt_len)
{
    uint8_t nonce[ENV_NONCE_MAX];
    env_kb kb;
    size_t dl, kl, aad;
    memset(nonce, 0x01, sizeof(nonce));
    memset(&kb, 0, sizeof(kb));
    kb.fam_len = strlen(fam);
    memcpy(kb.family, fam, kb.fam_len);
    kb.kek_version = version;
    kb.wrap_mech = (uint32_t)wrap;
    kb.wdek_len = wdek_len;
    memset(kb.wdek, 0x5A, wdek_len);
    memset(kb.kb_nonce, 0x02, sizeof(kb.kb_nonce));
    if (env_data_hdr_encode(aead, shift, nonce, (const uint8_t *)ctx, strlen(ctx), out,
                            ENV_HEADER_MAX, &dl) != ENV_OK ||
        env_kb_encode(&kb, out + dl, ENV_HEADER_MAX - dl, &kl, &aad) != ENV_OK)
        abort();
    /* Body: chunks of the plaintext, each followed by a zero tag. */
    size_t o = dl + kl, c = (size_t)1 << shift;
    do {
        size_t n = pt_len < c ? pt_len : c;
        memset(out + o, 'p', n);
        memset(out + o + n, 0, ENV_TAG_LEN);
        o += n + ENV_TAG_LEN;
        pt_len -= n;
    } while (pt_len > 0);
    return o;
}

static size_t make_dek(uint8_t *out, const char *fam, uint8_t aead)
{
    env_kb kb;
    uint8_t *p;
    size_t n;
    memset(&kb, 0, sizeof(kb));
    kb.fam_len = strlen(fam);
    memcpy(kb.family, fam, kb.fam_len);
    kb.kek_version = 7;
    kb.wrap_mech = CKM_AES_KEY_WRAP_KWP;
    kb.wdek_len = 40;
    memset(kb.wdek, 0x5A, 40);
    kb.dek_aead = aead;
    if (env_dek_encode(&kb, &p, &n) != ENV_OK)
        abort();
    memcpy(out, p, n);
    free(p);
    return n;
}

static void seed_text(const char *name, const uint8_t *bin, size_t n)
{
    char *t;
    if (env_to_text(bin, n, &t) != ENV_OK)
        abort();
    fuzz_seed(name, t, strlen(t));
    free(t);
}

static void write_seeds(void)
{
    static uint8_t b[ENV_HEADER_MAX + 4 * 1100];
    size_t n = make_env(b, ENV_AEAD_AES256_GCM, 10, "tenant=42,table=users", "payroll", 3,
                        CKM_AES_KEY_WRAP_KWP, 40, 1500);
    fuzz_seed("env-aes-2-chunks", b, n);
    n = make_env(b, ENV_AEAD_XCHACHA20_POLY1305, 16, "", "", 0, CKM_AES_KEY_WRAP, 16, 0);
    fuzz_seed("env-xchacha-empty", b, n);
    seed_text("env-xchacha-empty.txt", b, n);
    n = make_env(b, ENV_AEAD_AES256_GCM, 20, "c", "f", 1, CKM_AES_KEY_WRAP_PAD, 512, 5);
    fuzz_seed("env-aes-big-wdek", b, n);
    n = make_dek(b, "payroll", 0);
    fuzz_seed("dek-aes", b, n);
    seed_text("dek-aes.txt", b, n);
    n = make_dek(b, "", ENV_AEAD_XCHACHA20_POLY1305);
    fuzz_seed("dek-xchacha", b, n);
    fuzz_seed("env-truncated", "CUSE\x01\x01\x10", 7);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mock_token_init();
    fuzz_seeds_if_asked(write_seeds);
    return 0;
}
