/* stream.c -- sealing, opening and re-wrapping envelopes through a
 * CK_FUNCTION_LIST (docs/envelope-format.md sec. 4-7). Every cryptographic step
 * is a PKCS#11 call: the DEK exists only as a session object in the token and
 * is destroyed on every path; this file sees plaintext, never key bytes. */
#include "envelope/internal.h"

#include <stdarg.h>
#include <stdlib.h>

#include "custos.h"

struct env_ctx {
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE kek;
    unsigned chunk_shift;
    unsigned aead;      /* for new envelopes and DEK files */
    bool aead_set;      /* chosen by the caller (a DEK file must agree) */
    int mechs;          /* MECH_* bits the token lists: -1 not asked yet */
    CK_RV last_ckr;
    char err[256];
};

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;

/* What each AEAD needs from the token (sec. 4-5): the DEK's key type and
 * generation mechanism, the AEAD mechanism. */
typedef struct aead_desc {
    unsigned id;
    CK_KEY_TYPE key_type;
    CK_MECHANISM_TYPE keygen, mech;
    const char *keygen_name, *mech_name;
} aead_desc;

static const aead_desc AEAD_DESCS[] = {
    { ENV_AEAD_AES256_GCM, CKK_AES, CKM_AES_KEY_GEN, CKM_AES_GCM, "CKM_AES_KEY_GEN", "CKM_AES_GCM" },
    { ENV_AEAD_XCHACHA20_POLY1305, CKK_CHACHA20, CKM_CHACHA20_KEY_GEN, CKM_CHACHA20_POLY1305,
      "CKM_CHACHA20_KEY_GEN", "CKM_CHACHA20_POLY1305" },
};

static const aead_desc *aead_of(unsigned id)
{
    for (size_t i = 0; i < ARRAY_LEN(AEAD_DESCS); i++)
        if (AEAD_DESCS[i].id == id)
            return &AEAD_DESCS[i];
    return NULL;
}

/* ---- errors ------------------------------------------------------------------ */
#define R(x) { x, #x },
static const struct {
    CK_RV rv;
    const char *name;
} CKR_NAMES[] = {
    R(CKR_OK) R(CKR_HOST_MEMORY) R(CKR_GENERAL_ERROR) R(CKR_FUNCTION_FAILED)
    R(CKR_ARGUMENTS_BAD) R(CKR_ATTRIBUTE_SENSITIVE) R(CKR_ATTRIBUTE_TYPE_INVALID)
    R(CKR_ATTRIBUTE_VALUE_INVALID) R(CKR_DATA_INVALID) R(CKR_DATA_LEN_RANGE)
    R(CKR_DEVICE_ERROR) R(CKR_ENCRYPTED_DATA_INVALID) R(CKR_ENCRYPTED_DATA_LEN_RANGE)
    R(CKR_AEAD_DECRYPT_FAILED) R(CKR_FUNCTION_NOT_SUPPORTED) R(CKR_KEY_HANDLE_INVALID)
    R(CKR_KEY_SIZE_RANGE) R(CKR_KEY_TYPE_INCONSISTENT) R(CKR_KEY_FUNCTION_NOT_PERMITTED)
    R(CKR_KEY_NOT_WRAPPABLE) R(CKR_KEY_UNEXTRACTABLE) R(CKR_MECHANISM_INVALID)
    R(CKR_MECHANISM_PARAM_INVALID) R(CKR_OBJECT_HANDLE_INVALID) R(CKR_OPERATION_ACTIVE)
    R(CKR_OPERATION_NOT_INITIALIZED) R(CKR_SESSION_CLOSED) R(CKR_SESSION_HANDLE_INVALID)
    R(CKR_SESSION_READ_ONLY) R(CKR_TEMPLATE_INCOMPLETE) R(CKR_TEMPLATE_INCONSISTENT)
    R(CKR_TOKEN_NOT_PRESENT) R(CKR_UNWRAPPING_KEY_HANDLE_INVALID)
    R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_USER_NOT_LOGGED_IN)
    R(CKR_WRAPPED_KEY_INVALID) R(CKR_WRAPPED_KEY_LEN_RANGE) R(CKR_WRAPPING_KEY_HANDLE_INVALID)
    R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_BUFFER_TOO_SMALL) R(CKR_KEY_EXHAUSTED)
    R(CKR_CRYPTOKI_NOT_INITIALIZED) R(CKR_ACTION_PROHIBITED)
};
#undef R

const char *env_ckr_name(CK_RV rv)
{
    static __thread char unknown[32];
    for (size_t i = 0; i < ARRAY_LEN(CKR_NAMES); i++)
        if (CKR_NAMES[i].rv == rv)
            return CKR_NAMES[i].name;
    snprintf(unknown, sizeof(unknown), "CKR 0x%08lX", (unsigned long)rv);
    return unknown;
}

/* Record one line for env_ctx_error. Callers pass only public facts (field
 * names, chunk indices, CKR names, mechanism numbers). */
__attribute__((format(printf, 3, 4)))
static env_rv say(env_ctx *c, env_rv rv, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, sizeof(c->err), "%s: ", env_strerror(rv));
    if (n < 0 || (size_t)n >= sizeof(c->err))
        return rv;
    va_start(ap, fmt);
    vsnprintf(c->err + n, sizeof(c->err) - (size_t)n, fmt, ap);
    va_end(ap);
    return rv;
}

/* A failed token call: remember the CKR and map it to `rv`. */
static env_rv ckr(env_ctx *c, CK_RV r, env_rv rv, const char *call)
{
    c->last_ckr = r;
    return say(c, rv, "%s returned %s", call, env_ckr_name(r));
}

static env_rv parse_fail(env_ctx *c, env_rv rv, const char *field)
{
    return say(c, rv, "field %s", field != NULL ? field : "?");
}

/* ---- context ------------------------------------------------------------------ */
env_rv env_ctx_new(CK_FUNCTION_LIST_PTR p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE kek,
                   env_ctx **out)
{
    ENSURE(p11 != NULL && out != NULL, ENV_E_ARGS);
    env_ctx *c = calloc(1, sizeof(*c));
    ENSURE(c != NULL, ENV_E_NOMEM);
    c->f = p11;
    c->s = session;
    c->kek = kek;
    c->chunk_shift = ENV_CHUNK_SHIFT_DEFAULT;
    c->aead = ENV_AEAD_AES256_GCM;
    c->mechs = -1;
    *out = c;
    return ENV_OK;
}

void env_ctx_free(env_ctx *ctx)
{
    free(ctx);
}

void env_ctx_set_kek(env_ctx *ctx, CK_OBJECT_HANDLE kek)
{
    ctx->kek = kek;
}

env_rv env_ctx_set_chunk_shift(env_ctx *ctx, unsigned shift)
{
    ENSURE(ctx != NULL && shift >= ENV_CHUNK_SHIFT_MIN && shift <= ENV_CHUNK_SHIFT_MAX,
           ENV_E_ARGS);
    ctx->chunk_shift = shift;
    return ENV_OK;
}

env_rv env_ctx_set_aead(env_ctx *ctx, unsigned aead)
{
    ENSURE(ctx != NULL, ENV_E_ARGS);
    ENSURE(aead_of(aead) != NULL, say(ctx, ENV_E_ALGORITHM, "AEAD %u is not one this library seals", aead));
    ctx->aead = aead;
    ctx->aead_set = true;
    return ENV_OK;
}

const char *env_ctx_error(const env_ctx *ctx)
{
    return ctx->err[0] != '\0' ? ctx->err : "no error";
}

CK_RV env_ctx_last_ckr(const env_ctx *ctx)
{
    return ctx->last_ckr;
}

/* ---- token primitives ----------------------------------------------------------- */
static env_rv random_bytes(env_ctx *c, uint8_t *p, size_t n)
{
    CK_RV r = c->f->C_GenerateRandom(c->s, p, (CK_ULONG)n);
    return r == CKR_OK ? ENV_OK : ckr(c, r, ENV_E_TOKEN, "C_GenerateRandom");
}

/* D = SHA-256(data header), computed by the token (sec. 1). */
static env_rv digest(env_ctx *c, const uint8_t *p, size_t n, uint8_t out[ENV_DIGEST_LEN])
{
    CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
    CK_ULONG len = ENV_DIGEST_LEN;
    CK_RV r = c->f->C_DigestInit(c->s, &m);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_DigestInit(CKM_SHA256)");
    r = c->f->C_Digest(c->s, (CK_BYTE_PTR)p, (CK_ULONG)n, out, &len);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_Digest");
    ENSURE(len == ENV_DIGEST_LEN, say(c, ENV_E_TOKEN, "C_Digest gave %lu bytes", len));
    return ENV_OK;
}

static void destroy(env_ctx *c, CK_OBJECT_HANDLE *h)
{
    if (*h != CK_INVALID_HANDLE)
        (void)c->f->C_DestroyObject(c->s, *h);
    *h = CK_INVALID_HANDLE;
}

/* One AEAD call, single-part so a wrong tag releases nothing: AES-256-GCM
 * (CKM_AES_GCM, 96-bit nonce, 128-bit tag) or XChaCha20-Poly1305
 * (CKM_CHACHA20_POLY1305 with a 192-bit nonce: PKCS#11 3.2 gives
 * ulNonceLen in bits; 16-byte tag). `out` holds at least in_len + 16 bytes. */
static CK_RV aead(env_ctx *c, unsigned alg, bool enc, CK_OBJECT_HANDLE key, const uint8_t *nonce,
                  const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                  uint8_t *out, size_t *out_len)
{
    static uint8_t empty[1];
    CK_GCM_PARAMS p = { (CK_BYTE_PTR)nonce, 12, 96, (CK_BYTE_PTR)aad, (CK_ULONG)aad_len,
                        ENV_TAG_LEN * 8 };
    CK_SALSA20_CHACHA20_POLY1305_PARAMS x = { (CK_BYTE_PTR)nonce, 192, (CK_BYTE_PTR)aad,
                                              (CK_ULONG)aad_len };
    CK_MECHANISM m = { CKM_AES_GCM, &p, sizeof(p) };
    if (alg == ENV_AEAD_XCHACHA20_POLY1305)
        m = (CK_MECHANISM){ CKM_CHACHA20_POLY1305, &x, sizeof(x) };
    /* Room for what the call can produce: a tag more, or a tag less. */
    CK_ULONG ol = (CK_ULONG)(enc ? in_len + ENV_TAG_LEN : in_len);
    CK_RV r = enc ? c->f->C_EncryptInit(c->s, &m, key) : c->f->C_DecryptInit(c->s, &m, key);
    if (r != CKR_OK)
        return r;
    /* Never pass NULL data: some tokens read it as "no argument". */
    CK_BYTE_PTR ip = in_len > 0 ? (CK_BYTE_PTR)in : empty;
    r = enc ? c->f->C_Encrypt(c->s, ip, (CK_ULONG)in_len, out, &ol)
            : c->f->C_Decrypt(c->s, ip, (CK_ULONG)in_len, out, &ol);
    *out_len = (size_t)ol;
    return r;
}

/* nonce_i = nonce_base XOR (0^(N-4) || BE32(i)) (sec. 4). */
static void chunk_nonce(const uint8_t *base, size_t len, uint64_t index, uint8_t *nonce)
{
    uint8_t be[4];
    memcpy(nonce, base, len);
    be_put(be, (uint32_t)index, 4);
    for (size_t i = 0; i < 4; i++)
        nonce[len - 4 + i] ^= be[i];
}

/* The mechanisms of the session's slot (caller frees *list). */
static env_rv mech_list(env_ctx *c, CK_MECHANISM_TYPE **list, CK_ULONG *n)
{
    CK_SESSION_INFO si;
    *list = NULL;
    *n = 0;
    CK_RV r = c->f->C_GetSessionInfo(c->s, &si);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_GetSessionInfo");
    r = c->f->C_GetMechanismList(si.slotID, NULL, n);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_GetMechanismList");
    *list = calloc(*n + 1, sizeof(**list));
    ENSURE(*list != NULL, ENV_E_NOMEM);
    r = c->f->C_GetMechanismList(si.slotID, *list, n);
    if (r != CKR_OK) {
        free(*list);
        *list = NULL;
        return ckr(c, r, ENV_E_TOKEN, "C_GetMechanismList");
    }
    return ENV_OK;
}

static bool listed(const CK_MECHANISM_TYPE *list, CK_ULONG n, CK_MECHANISM_TYPE m)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (list[i] == m)
            return true;
    return false;
}

/* The mechanisms this library may use, as MECH_* bits: the wrap ones in
 * order of preference (sec. 5), then ChaCha20's. */
static const CK_MECHANISM_TYPE MECHS[] = { CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD,
                                           CKM_AES_KEY_WRAP, CKM_CHACHA20_POLY1305,
                                           CKM_CHACHA20_KEY_GEN };
enum { N_WRAP_MECHS = 3, MECH_CHACHA = 1 << 3, MECH_CHACHA_KEYGEN = 1 << 4 };

/* Which of MECHS the session's slot lists: asked once per context. */
static env_rv token_mechs(env_ctx *c, int *bits)
{
    if (c->mechs < 0) {
        CK_ULONG n = 0;
        CK_MECHANISM_TYPE *list = NULL;
        ENV_GUARD(mech_list(c, &list, &n));
        int b = 0;
        for (size_t i = 0; i < ARRAY_LEN(MECHS); i++)
            if (listed(list, n, MECHS[i]))
                b |= 1 << i;
        free(list);
        c->mechs = b;
    }
    *bits = c->mechs;
    return ENV_OK;
}

/* The wrap mechanism this token offers, in order of preference (sec. 5). */
static env_rv pick_wrap(env_ctx *c, CK_MECHANISM_TYPE *mech)
{
    int bits;
    ENV_GUARD(token_mechs(c, &bits));
    for (size_t i = 0; i < N_WRAP_MECHS; i++)
        if (bits & (1 << i)) {
            *mech = MECHS[i];
            return ENV_OK;
        }
    return say(c, ENV_E_MECHANISM, "no AES key wrap (KWP, 0x210A or RFC 3394) on this token");
}

/* An XChaCha20-Poly1305 envelope needs CKM_CHACHA20_POLY1305 (and, for a
 * fresh DEK, CKM_CHACHA20_KEY_GEN) in the slot's mechanism list; a token
 * without them gets one clear line, not a failed call later (sec. 4).
 * AES-256-GCM is not checked: every token this library serves has it. */
static env_rv need_aead(env_ctx *c, unsigned alg, bool keygen)
{
    const aead_desc *a = aead_of(alg);
    ENSURE(a != NULL, say(c, ENV_E_ALGORITHM, "%s is not supported", env_aead_name(alg)));
    if (alg != ENV_AEAD_XCHACHA20_POLY1305)
        return ENV_OK;
    int bits;
    ENV_GUARD(token_mechs(c, &bits));
    ENSURE(bits & MECH_CHACHA, say(c, ENV_E_MECHANISM,
                              "the token does not offer %s, which %s envelopes need; "
                              "use AES-256-GCM with this token",
                              a->mech_name, env_aead_name(alg)));
    ENSURE(!keygen || (bits & MECH_CHACHA_KEYGEN),
           say(c, ENV_E_MECHANISM,
               "the token does not offer %s, which a fresh %s data key needs; "
               "use AES-256-GCM with this token",
               a->keygen_name, env_aead_name(alg)));
    return ENV_OK;
}

/* A variable-length attribute, two-call rule (PKCS#11 3.2 sec. 5.7). */
static CK_RV get_bytes(env_ctx *c, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, uint8_t *buf,
                       size_t cap, size_t *len)
{
    CK_ATTRIBUTE a = { t, NULL, 0 };
    CK_RV r = c->f->C_GetAttributeValue(c->s, h, &a, 1);
    if (r != CKR_OK)
        return r;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > cap)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    a.pValue = buf;
    r = c->f->C_GetAttributeValue(c->s, h, &a, 1);
    *len = (size_t)a.ulValueLen;
    return r;
}

/* Family and version: the Custos attributes when the token has them, else
 * CKA_LABEL and version 0 (sec. 2.2). */
static env_rv identity(env_ctx *c, CK_OBJECT_HANDLE h, env_kb *kb)
{
    size_t n = 0;
    CK_ULONG v = 0;
    CK_ATTRIBUTE va = { CKA_CUSTOS_VERSION, &v, sizeof(v) };
    CK_RV r = get_bytes(c, h, CKA_CUSTOS_FAMILY, kb->family, sizeof(kb->family), &n);
    if (r != CKR_OK || n == 0) {
        r = get_bytes(c, h, CKA_LABEL, kb->family, sizeof(kb->family), &n);
        if (r == CKR_ATTRIBUTE_VALUE_INVALID)
            return say(c, ENV_E_FIELD, "key label longer than %d bytes", ENV_FAMILY_MAX);
        if (r != CKR_OK)
            return ckr(c, r, ENV_E_TOKEN, "C_GetAttributeValue(CKA_LABEL)");
    }
    ENSURE(env_text_field_ok(kb->family, n), say(c, ENV_E_FIELD, "key label has control characters"));
    kb->fam_len = n;
    kb->kek_version = 0;
    if (c->f->C_GetAttributeValue(c->s, h, &va, 1) == CKR_OK) {
        ENSURE(v <= 0xFFFFFFFFUL, say(c, ENV_E_FIELD, "key version above 2^32-1"));
        kb->kek_version = (uint32_t)v;
    }
    return ENV_OK;
}

env_rv env_key_identity(env_ctx *ctx, CK_OBJECT_HANDLE key, char family[ENV_FAMILY_MAX + 1],
                        unsigned long *version)
{
    env_kb kb;
    ENSURE(ctx != NULL && family != NULL && version != NULL, ENV_E_ARGS);
    ENV_GUARD(identity(ctx, key, &kb));
    memcpy(family, kb.family, kb.fam_len);
    family[kb.fam_len] = '\0';
    *version = kb.kek_version;
    return ENV_OK;
}

/* All secret keys matching `tmpl`, at most `cap` handles. */
static env_rv find(env_ctx *c, CK_ATTRIBUTE *tmpl, CK_ULONG nt, CK_OBJECT_HANDLE *hs,
                   CK_ULONG cap, CK_ULONG *n)
{
    CK_RV r = c->f->C_FindObjectsInit(c->s, tmpl, nt);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_FindObjectsInit");
    r = c->f->C_FindObjects(c->s, hs, cap, n);
    CK_RV r2 = c->f->C_FindObjectsFinal(c->s);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_FindObjects");
    if (r2 != CKR_OK)
        return ckr(c, r2, ENV_E_TOKEN, "C_FindObjectsFinal");
    return ENV_OK;
}

#define FIND_MAX 64

/* The keys named `name`: by CKA_CUSTOS_FAMILY, else (tokens without it, or a
 * plain key) by CKA_LABEL. */
static env_rv candidates(env_ctx *c, const char *name, CK_OBJECT_HANDLE *hs, CK_ULONG *n)
{
    CK_ATTRIBUTE t[2] = {
        { CKA_CLASS, &secret_class, sizeof(secret_class) },
        { CKA_CUSTOS_FAMILY, (void *)name, (CK_ULONG)strlen(name) },
    };
    *n = 0;
    CK_RV r = c->f->C_FindObjectsInit(c->s, t, 2);
    if (r == CKR_OK) {
        r = c->f->C_FindObjects(c->s, hs, FIND_MAX, n);
        (void)c->f->C_FindObjectsFinal(c->s);
        if (r != CKR_OK)
            *n = 0;
    }
    if (*n > 0)
        return ENV_OK;
    t[1].type = CKA_LABEL;
    return find(c, t, 2, hs, FIND_MAX, n);
}

env_rv env_find_kek(env_ctx *ctx, const char *family, unsigned long version,
                    CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_HANDLE hs[FIND_MAX];
    CK_ULONG n = 0, hits = 0;
    ENSURE(ctx != NULL && family != NULL && out != NULL, ENV_E_ARGS);
    ENSURE(strlen(family) <= ENV_FAMILY_MAX, say(ctx, ENV_E_ARGS, "family name too long"));
    ENV_GUARD(candidates(ctx, family, hs, &n));
    for (CK_ULONG i = 0; i < n; i++) {
        env_kb kb;
        ENV_GUARD(identity(ctx, hs[i], &kb));
        if (kb.fam_len == strlen(family) && memcmp(kb.family, family, kb.fam_len) == 0 &&
            kb.kek_version == version) {
            *out = hs[i];
            hits++;
        }
    }
    ENSURE(hits > 0, say(ctx, ENV_E_KEY_NOT_FOUND, "family \"%s\" version %lu", family, version));
    ENSURE(hits == 1, say(ctx, ENV_E_KEY_AMBIGUOUS, "family \"%s\" version %lu", family, version));
    return ENV_OK;
}

env_rv env_find_key_by_label(env_ctx *ctx, const char *label, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_HANDLE hs[FIND_MAX];
    CK_ULONG n = 0, ties = 0;
    uint32_t best = 0;
    ENSURE(ctx != NULL && label != NULL && out != NULL, ENV_E_ARGS);
    ENSURE(strlen(label) <= ENV_FAMILY_MAX, say(ctx, ENV_E_ARGS, "label too long"));
    ENV_GUARD(candidates(ctx, label, hs, &n));
    ENSURE(n > 0, say(ctx, ENV_E_KEY_NOT_FOUND, "no key labelled \"%s\"", label));
    for (CK_ULONG i = 0; i < n; i++) {
        env_kb kb;
        ENV_GUARD(identity(ctx, hs[i], &kb));
        if (i == 0 || kb.kek_version > best) {
            best = kb.kek_version;
            *out = hs[i];
            ties = 1;
        } else if (kb.kek_version == best) {
            ties++;
        }
    }
    ENSURE(ties == 1, say(ctx, ENV_E_KEY_AMBIGUOUS, "%lu keys labelled \"%s\" with version %u",
                          ties, label, best));
    return ENV_OK;
}

/* The KEK a key block names: the caller's (which must match) or a lookup. */
static env_rv resolve_kek(env_ctx *c, CK_OBJECT_HANDLE given, const env_kb *kb,
                          CK_OBJECT_HANDLE *out)
{
    char fam[ENV_FAMILY_MAX + 1];
    memcpy(fam, kb->family, kb->fam_len);
    fam[kb->fam_len] = '\0';
    if (given == CK_INVALID_HANDLE)
        return env_find_kek(c, fam, kb->kek_version, out);
    env_kb id;
    ENV_GUARD(identity(c, given, &id));
    ENSURE(id.fam_len == kb->fam_len && memcmp(id.family, kb->family, kb->fam_len) == 0 &&
               id.kek_version == kb->kek_version,
           say(c, ENV_E_KEY_MISMATCH, "the envelope names family \"%s\" version %u", fam,
               kb->kek_version));
    *out = given;
    return ENV_OK;
}

/* Unwrap the DEK of AEAD `alg` as a session object with only the usage
 * asked for (sec. 5). */
static env_rv unwrap(env_ctx *c, CK_OBJECT_HANDLE kek, const env_kb *kb, unsigned alg, bool enc,
                     bool dec, bool extractable, CK_OBJECT_HANDLE *dek)
{
    CK_BBOOL e = enc ? CK_TRUE : CK_FALSE, d = dec ? CK_TRUE : CK_FALSE;
    CK_BBOOL x = extractable ? CK_TRUE : CK_FALSE;
    const aead_desc *a = aead_of(alg);
    *dek = CK_INVALID_HANDLE;
    ENSURE(a != NULL, say(c, ENV_E_ALGORITHM, "%s is not supported", env_aead_name(alg)));
    CK_KEY_TYPE kt = a->key_type;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &secret_class, sizeof(secret_class) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &no, sizeof(no) },
        { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
        { CKA_EXTRACTABLE, &x, sizeof(x) },
        { CKA_ENCRYPT, &e, sizeof(e) },
        { CKA_DECRYPT, &d, sizeof(d) },
    };
    CK_MECHANISM m = { kb->wrap_mech, NULL, 0 };
    CK_RV r = c->f->C_UnwrapKey(c->s, &m, kek, (CK_BYTE_PTR)kb->wdek, (CK_ULONG)kb->wdek_len, t,
                                ARRAY_LEN(t), dek);
    if (r != CKR_OK) {
        *dek = CK_INVALID_HANDLE;
        return ckr(c, r, ENV_E_UNWRAP, "C_UnwrapKey");
    }
    return ENV_OK;
}

/* Wrap `dek` under the context's KEK and fill the key block's key fields. */
static env_rv wrap(env_ctx *c, CK_OBJECT_HANDLE dek, env_kb *kb)
{
    CK_MECHANISM_TYPE mech = 0;
    ENSURE(c->kek != CK_INVALID_HANDLE, say(c, ENV_E_ARGS, "no KEK given"));
    ENV_GUARD(identity(c, c->kek, kb));
    ENV_GUARD(pick_wrap(c, &mech));
    CK_MECHANISM m = { mech, NULL, 0 };
    CK_ULONG n = sizeof(kb->wdek);
    CK_RV r = c->f->C_WrapKey(c->s, &m, c->kek, dek, kb->wdek, &n);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_WrapKey");
    ENSURE(n >= ENV_WDEK_MIN && n % 8 == 0, say(c, ENV_E_TOKEN, "C_WrapKey gave %lu bytes", n));
    kb->wdek_len = (size_t)n;
    kb->wrap_mech = (uint32_t)mech;
    return ENV_OK;
}

/* A fresh 256-bit DEK for AEAD `alg` (AES-256 or ChaCha20), session object,
 * sensitive, extractable only to be wrapped (sec. 5). A ChaCha20 key has one
 * size, so CKA_VALUE_LEN is given for AES only. */
static env_rv gen_dek(env_ctx *c, unsigned alg, CK_OBJECT_HANDLE *dek)
{
    CK_ULONG len = 32;
    const aead_desc *a = aead_of(alg);
    char call[64];
    *dek = CK_INVALID_HANDLE;
    ENSURE(a != NULL, say(c, ENV_E_ALGORITHM, "%s is not supported", env_aead_name(alg)));
    CK_KEY_TYPE kt = a->key_type;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &secret_class, sizeof(secret_class) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &no, sizeof(no) },
        { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) },
        { CKA_EXTRACTABLE, &yes, sizeof(yes) },
        { CKA_ENCRYPT, &yes, sizeof(yes) },
        { CKA_DECRYPT, &yes, sizeof(yes) },
        { CKA_VALUE_LEN, &len, sizeof(len) },
    };
    CK_ULONG nt = ARRAY_LEN(t) - (kt == CKK_AES ? 0 : 1);
    CK_MECHANISM m = { a->keygen, NULL, 0 };
    CK_RV r = c->f->C_GenerateKey(c->s, &m, t, nt, dek);
    if (r != CKR_OK) {
        *dek = CK_INVALID_HANDLE;
        snprintf(call, sizeof(call), "C_GenerateKey(%s)", a->keygen_name);
        return ckr(c, r, ENV_E_TOKEN, call);
    }
    return ENV_OK;
}

/* KB_AAD = "CUSE-kb1" || D || key-block fields (sec. 5). */
static size_t kb_aad(const uint8_t d[ENV_DIGEST_LEN], const uint8_t *fields, size_t n,
                     uint8_t *aad)
{
    memcpy(aad, ENV_KB_LABEL, ENV_KB_LABEL_LEN);
    memcpy(aad + ENV_KB_LABEL_LEN, d, ENV_DIGEST_LEN);
    memcpy(aad + ENV_KB_LABEL_LEN + ENV_DIGEST_LEN, fields, n);
    return ENV_KB_LABEL_LEN + ENV_DIGEST_LEN + n;
}

#define KB_AAD_MAX (ENV_KB_LABEL_LEN + ENV_DIGEST_LEN + 2 + ENV_FAMILY_MAX + 12 + ENV_WDEK_MAX)
#define KB_MAX (2 + ENV_FAMILY_MAX + 12 + ENV_WDEK_MAX + ENV_KB_NONCE_LEN + ENV_TAG_LEN)

/* How an envelope's data is sealed: what the key-block tag needs besides
 * the DEK (sec. 5). */
typedef struct env_alg {
    unsigned aead;
    const uint8_t *nonce_base;
} env_alg;

/* The key-block tag's nonce (sec. 5): AES-256-GCM uses kb_nonce itself;
 * XChaCha20-Poly1305 uses nonce_base XOR (kb_nonce || 0^12), 192 bits of
 * which the per-envelope nonce_base brings 192 random and kb_nonce 96
 * fresh ones per re-wrap. */
static void kb_nonce_for(const env_alg *a, const env_kb *kb, uint8_t nonce[ENV_NONCE_MAX])
{
    if (a->aead != ENV_AEAD_XCHACHA20_POLY1305) {
        memcpy(nonce, kb->kb_nonce, ENV_KB_NONCE_LEN);
        return;
    }
    memcpy(nonce, a->nonce_base, ENV_NONCE_MAX);
    for (size_t i = 0; i < ENV_KB_NONCE_LEN; i++)
        nonce[i] ^= kb->kb_nonce[i];
}

/* Append a key block with a fresh nonce and its tag to the data header in
 * `hdr` (data_len bytes); *len is the whole header. */
static env_rv seal_kb(env_ctx *c, CK_OBJECT_HANDLE dek, const env_alg *alg,
                      const uint8_t d[ENV_DIGEST_LEN], env_kb *kb, uint8_t *hdr, size_t data_len,
                      size_t *len)
{
    uint8_t aad[KB_AAD_MAX], tag[ENV_TAG_LEN], nonce[ENV_NONCE_MAX];
    size_t n, fields, tl;
    ENV_GUARD(random_bytes(c, kb->kb_nonce, ENV_KB_NONCE_LEN));
    ENV_GUARD(env_kb_encode(kb, hdr + data_len, ENV_HEADER_MAX - data_len, &n, &fields));
    size_t al = kb_aad(d, hdr + data_len, fields, aad);
    kb_nonce_for(alg, kb, nonce);
    CK_RV r = aead(c, alg->aead, true, dek, nonce, aad, al, NULL, 0, tag, &tl);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_TOKEN, "C_Encrypt(key block)");
    ENSURE(tl == ENV_TAG_LEN, say(c, ENV_E_TOKEN, "GCM tag of %zu bytes", tl));
    memcpy(hdr + data_len + fields + ENV_KB_NONCE_LEN, tag, ENV_TAG_LEN);
    *len = data_len + n;
    return ENV_OK;
}

static env_rv verify_kb(env_ctx *c, CK_OBJECT_HANDLE dek, const env_alg *alg,
                        const uint8_t d[ENV_DIGEST_LEN], const env_kb *kb)
{
    uint8_t enc[KB_MAX], aad[KB_AAD_MAX], out[ENV_TAG_LEN], nonce[ENV_NONCE_MAX];
    size_t n, fields, ol;
    ENV_GUARD(env_kb_encode(kb, enc, sizeof(enc), &n, &fields));
    size_t al = kb_aad(d, enc, fields, aad);
    kb_nonce_for(alg, kb, nonce);
    CK_RV r = aead(c, alg->aead, false, dek, nonce, aad, al, kb->kb_tag, ENV_TAG_LEN, out, &ol);
    if (r != CKR_OK)
        return ckr(c, r, ENV_E_HEADER_AUTH, "key-block tag check (C_Decrypt)");
    ENSURE(ol == 0, say(c, ENV_E_HEADER_AUTH, "key-block tag check gave output"));
    return ENV_OK;
}

/* ---- chunk state shared by writer and reader ------------------------------------ */
typedef struct chunker {
    unsigned aead;
    uint8_t nonce_base[ENV_NONCE_MAX];
    size_t nonce_len;
    uint8_t *aad;       /* D || BE32(i) || f || context */
    size_t aad_len;
    uint64_t index;
} chunker;

static env_rv chunker_init(chunker *k, unsigned aead, const uint8_t d[ENV_DIGEST_LEN],
                           const uint8_t *nonce_base, const uint8_t *context, size_t ctx_len)
{
    k->aead = aead;
    k->nonce_len = env_aead_nonce_len(aead);
    ENSURE(k->nonce_len >= 4 && k->nonce_len <= ENV_NONCE_MAX, ENV_E_ALGORITHM);
    memcpy(k->nonce_base, nonce_base, k->nonce_len);
    k->aad_len = ENV_DIGEST_LEN + 5 + ctx_len;
    k->aad = malloc(k->aad_len);
    ENSURE(k->aad != NULL, ENV_E_NOMEM);
    memcpy(k->aad, d, ENV_DIGEST_LEN);
    if (ctx_len > 0)
        memcpy(k->aad + ENV_DIGEST_LEN + 5, context, ctx_len);
    k->index = 0;
    return ENV_OK;
}

static void chunker_next(chunker *k, bool final, uint8_t nonce[ENV_NONCE_MAX])
{
    chunk_nonce(k->nonce_base, k->nonce_len, k->index, nonce);
    be_put(k->aad + ENV_DIGEST_LEN, (uint32_t)k->index, 4);
    k->aad[ENV_DIGEST_LEN + 4] = final ? 1 : 0;
}

/* ---- writer ------------------------------------------------------------------------ */
struct env_writer {
    env_ctx *c;
    env_sink sink;
    void *arg;
    CK_OBJECT_HANDLE dek;
    chunker k;
    uint8_t *buf;   /* plaintext of the pending chunk */
    size_t len, cap;
    uint8_t *ct;
    bool failed;
};

static void writer_free(env_writer *w)
{
    if (w == NULL)
        return;
    destroy(w->c, &w->dek);
    if (w->buf != NULL)
        env_wipe(w->buf, w->cap);
    free(w->buf);
    free(w->ct);
    free(w->k.aad);
    free(w);
}

static env_rv emit(env_ctx *c, env_sink sink, void *arg, const uint8_t *p, size_t n)
{
    if (n > 0 && sink(arg, p, n) != 0)
        return say(c, ENV_E_IO, "the output sink refused %zu bytes", n);
    return ENV_OK;
}

static env_rv flush(env_writer *w, bool final)
{
    uint8_t nonce[ENV_NONCE_MAX];
    size_t ol;
    ENSURE(w->k.index <= ENV_CHUNK_INDEX_MAX, say(w->c, ENV_E_TOO_LARGE, "more than 2^32 chunks"));
    chunker_next(&w->k, final, nonce);
    CK_RV r = aead(w->c, w->k.aead, true, w->dek, nonce, w->k.aad, w->k.aad_len, w->buf, w->len,
                   w->ct, &ol);
    env_wipe(w->buf, w->len);
    if (r != CKR_OK) {
        char call[64];
        snprintf(call, sizeof(call), "C_Encrypt(%s)", aead_of(w->k.aead)->mech_name);
        return ckr(w->c, r, ENV_E_TOKEN, call);
    }
    ENSURE(ol == w->len + ENV_TAG_LEN, say(w->c, ENV_E_TOKEN, "C_Encrypt gave %zu bytes", ol));
    ENV_GUARD(emit(w->c, w->sink, w->arg, w->ct, ol));
    w->len = 0;
    w->k.index++;
    return ENV_OK;
}

/* The AEAD of a DEK file's key (sec. 3): an absent byte is AES-256-GCM. */
static unsigned dek_aead(const env_kb *kb)
{
    return kb->dek_aead == 0 ? ENV_AEAD_AES256_GCM : kb->dek_aead;
}

/* The DEK, its AEAD and the key-block fields for a new envelope: a fresh DEK
 * for the context's AEAD wrapped under the context's KEK, or the DEK of a
 * DEK file (its wrapped form reused, its AEAD with it). */
static env_rv seal_key(env_ctx *c, const uint8_t *dekf, size_t dekf_len, env_kb *kb,
                       unsigned *alg, CK_OBJECT_HANDLE *dek)
{
    if (dekf == NULL) {
        *alg = c->aead;
        ENV_GUARD(need_aead(c, *alg, true));
        ENV_GUARD(gen_dek(c, *alg, dek));
        return wrap(c, *dek, kb);
    }
    const char *field = NULL;
    CK_OBJECT_HANDLE kek;
    env_rv rv = env_dek_parse(dekf, dekf_len, kb, &field);
    if (rv != ENV_OK)
        return parse_fail(c, rv, field);
    *alg = dek_aead(kb);
    ENSURE(!c->aead_set || c->aead == *alg,
           say(c, ENV_E_ALGORITHM, "the DEK file holds a %s key, not a %s one", env_aead_name(*alg),
               env_aead_name(c->aead)));
    ENV_GUARD(need_aead(c, *alg, false));
    ENV_GUARD(resolve_kek(c, c->kek, kb, &kek));
    return unwrap(c, kek, kb, *alg, true, false, false, dek);
}

env_rv env_seal_begin(env_ctx *ctx, const char *context, const uint8_t *dek, size_t dek_len,
                      env_sink sink, void *arg, env_writer **out)
{
    env_rv rv = ENV_OK;
    env_writer *w = NULL;
    uint8_t hdr[ENV_HEADER_MAX], nonce_base[ENV_NONCE_MAX], d[ENV_DIGEST_LEN];
    size_t data_len, hlen;
    unsigned alg = ENV_AEAD_AES256_GCM;
    env_kb kb;
    ENSURE(ctx != NULL && context != NULL && sink != NULL && out != NULL, ENV_E_ARGS);
    *out = NULL;
    size_t cl = strlen(context);
    ENSURE(cl <= ENV_CONTEXT_MAX && env_text_field_ok((const uint8_t *)context, cl),
           say(ctx, ENV_E_FIELD, "context: at most %d bytes, no control characters",
               ENV_CONTEXT_MAX));
    memset(&kb, 0, sizeof(kb));
    w = calloc(1, sizeof(*w));
    ENSURE(w != NULL, ENV_E_NOMEM);
    w->c = ctx;
    w->sink = sink;
    w->arg = arg;
    w->dek = CK_INVALID_HANDLE;
    w->cap = (size_t)1 << ctx->chunk_shift;
    w->buf = malloc(w->cap);
    w->ct = malloc(w->cap + ENV_TAG_LEN);
    ENSURE_OUT(w->buf != NULL && w->ct != NULL, ENV_E_NOMEM);
    GUARD_OUT(seal_key(ctx, dek, dek_len, &kb, &alg, &w->dek));
    GUARD_OUT(random_bytes(ctx, nonce_base, env_aead_nonce_len(alg)));
    GUARD_OUT(env_data_hdr_encode(alg, ctx->chunk_shift, nonce_base, (const uint8_t *)context, cl,
                                  hdr, sizeof(hdr), &data_len));
    GUARD_OUT(digest(ctx, hdr, data_len, d));
    env_alg ea = { alg, nonce_base };
    GUARD_OUT(seal_kb(ctx, w->dek, &ea, d, &kb, hdr, data_len, &hlen));
    GUARD_OUT(chunker_init(&w->k, alg, d, nonce_base, (const uint8_t *)context, cl));
    GUARD_OUT(emit(ctx, sink, arg, hdr, hlen));
    *out = w;
    w = NULL;
out:
    writer_free(w);
    return rv;
}

env_rv env_seal_update(env_writer *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    ENSURE(w != NULL && (data != NULL || len == 0), ENV_E_ARGS);
    ENSURE(!w->failed, ENV_E_STATE);
    while (len > 0) {
        /* A full buffer is sealed only once more data shows it is not final. */
        if (w->len == w->cap) {
            env_rv rv = flush(w, false);
            if (rv != ENV_OK) {
                w->failed = true;
                return rv;
            }
        }
        size_t n = w->cap - w->len < len ? w->cap - w->len : len;
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        p += n;
        len -= n;
    }
    return ENV_OK;
}

env_rv env_seal_final(env_writer *w)
{
    ENSURE(w != NULL, ENV_E_ARGS);
    env_rv rv = w->failed ? ENV_E_STATE : flush(w, true);
    writer_free(w);
    return rv;
}

void env_seal_abort(env_writer *w)
{
    writer_free(w);
}

/* ---- reader ------------------------------------------------------------------------ */
struct env_reader {
    env_ctx *c;
    env_sink sink;
    void *arg;
    char *expect;
    bool have_header;
    bool failed;
    uint8_t hbuf[ENV_HEADER_MAX];
    size_t hlen;
    CK_OBJECT_HANDLE dek;
    chunker k;
    uint8_t *cbuf;  /* ciphertext of the pending chunk */
    size_t clen, ccap;
    uint8_t *pt;
    uint64_t body_len;
    unsigned shift;
};

static void reader_free(env_reader *r)
{
    if (r == NULL)
        return;
    destroy(r->c, &r->dek);
    if (r->pt != NULL)
        env_wipe(r->pt, r->ccap);
    free(r->pt);
    free(r->cbuf);
    free(r->expect);
    free(r->k.aad);
    free(r);
}

env_rv env_open_begin(env_ctx *ctx, const char *expected_context, env_sink sink, void *arg,
                      env_reader **out)
{
    ENSURE(ctx != NULL && sink != NULL && out != NULL, ENV_E_ARGS);
    env_reader *r = calloc(1, sizeof(*r));
    ENSURE(r != NULL, ENV_E_NOMEM);
    r->c = ctx;
    r->sink = sink;
    r->arg = arg;
    r->dek = CK_INVALID_HANDLE;
    if (expected_context != NULL && (r->expect = strdup(expected_context)) == NULL) {
        free(r);
        return ENV_E_NOMEM;
    }
    *out = r;
    return ENV_OK;
}

/* The header is complete: check the context, find the KEK, unwrap the DEK,
 * verify the key-block tag (sec. 7, in that order). */
static env_rv open_header(env_reader *r, const env_hdr *h)
{
    env_ctx *c = r->c;
    uint8_t d[ENV_DIGEST_LEN];
    CK_OBJECT_HANDLE kek;
    if (r->expect != NULL)
        ENSURE(strlen(r->expect) == h->ctx_len && memcmp(r->expect, h->context, h->ctx_len) == 0,
               say(c, ENV_E_CONTEXT, "the envelope was sealed for another context"));
    ENV_GUARD(need_aead(c, h->aead, false));
    ENV_GUARD(resolve_kek(c, c->kek, &h->kb, &kek));
    ENV_GUARD(unwrap(c, kek, &h->kb, h->aead, false, true, false, &r->dek));
    ENV_GUARD(digest(c, r->hbuf, h->data_len, d));
    env_alg ea = { h->aead, h->nonce_base };
    ENV_GUARD(verify_kb(c, r->dek, &ea, d, &h->kb));
    ENV_GUARD(chunker_init(&r->k, h->aead, d, h->nonce_base, h->context, h->ctx_len));
    r->shift = h->chunk_shift;
    r->ccap = ((size_t)1 << h->chunk_shift) + ENV_TAG_LEN;
    r->cbuf = malloc(r->ccap);
    r->pt = malloc(r->ccap);
    ENSURE(r->cbuf != NULL && r->pt != NULL, ENV_E_NOMEM);
    return ENV_OK;
}

static env_rv open_chunk(env_reader *r, bool final)
{
    uint8_t nonce[ENV_NONCE_MAX];
    size_t ol = 0;
    env_ctx *c = r->c;
    ENSURE(r->k.index <= ENV_CHUNK_INDEX_MAX, say(c, ENV_E_TOO_LARGE, "more than 2^32 chunks"));
    chunker_next(&r->k, final, nonce);
    CK_RV rc = aead(c, r->k.aead, false, r->dek, nonce, r->k.aad, r->k.aad_len, r->cbuf, r->clen,
                    r->pt, &ol);
    if (rc != CKR_OK) {
        env_wipe(r->pt, r->ccap);
        c->last_ckr = rc;
        /* The token cannot do the construction at all (a 192-bit nonce
         * refused): not the chunk's fault. */
        if (rc == CKR_MECHANISM_INVALID || rc == CKR_MECHANISM_PARAM_INVALID)
            return say(c, ENV_E_MECHANISM, "the token refused %s for %s (token: %s)",
                       aead_of(r->k.aead)->mech_name, env_aead_name(r->k.aead), env_ckr_name(rc));
        return say(c, ENV_E_CHUNK_AUTH,
                   "chunk %llu (changed, reordered, truncated or from another envelope; token: %s)",
                   (unsigned long long)r->k.index, env_ckr_name(rc));
    }
    ENSURE(ol + ENV_TAG_LEN == r->clen, say(c, ENV_E_TOKEN, "C_Decrypt gave %zu bytes", ol));
    env_rv rv = emit(c, r->sink, r->arg, r->pt, ol);
    env_wipe(r->pt, ol);
    ENV_GUARD(rv);
    r->clen = 0;
    r->k.index++;
    return ENV_OK;
}

static env_rv feed_body(env_reader *r, const uint8_t *p, size_t len)
{
    r->body_len += len;
    while (len > 0) {
        /* A full piece is a non-final chunk only once a byte follows it. */
        if (r->clen == r->ccap)
            ENV_GUARD(open_chunk(r, false));
        size_t n = r->ccap - r->clen < len ? r->ccap - r->clen : len;
        memcpy(r->cbuf + r->clen, p, n);
        r->clen += n;
        p += n;
        len -= n;
    }
    return ENV_OK;
}

static env_rv feed(env_reader *r, const uint8_t *p, size_t len)
{
    if (r->have_header)
        return feed_body(r, p, len);
    size_t n = sizeof(r->hbuf) - r->hlen < len ? sizeof(r->hbuf) - r->hlen : len;
    memcpy(r->hbuf + r->hlen, p, n);
    r->hlen += n;
    env_hdr h;
    const char *field = NULL;
    env_rv rv = env_hdr_parse(r->hbuf, r->hlen, &h, &field);
    if (rv == ENV_E_TRUNCATED && r->hlen < sizeof(r->hbuf))
        return ENV_OK; /* wait for more */
    if (rv != ENV_OK)
        return parse_fail(r->c, rv, field);
    r->have_header = true;
    ENV_GUARD(open_header(r, &h));
    /* Bytes past the header in hbuf, then the rest of the input, are body. */
    ENV_GUARD(feed_body(r, r->hbuf + h.header_len, r->hlen - h.header_len));
    return feed_body(r, p + n, len - n);
}

env_rv env_open_update(env_reader *r, const void *data, size_t len)
{
    ENSURE(r != NULL && (data != NULL || len == 0), ENV_E_ARGS);
    ENSURE(!r->failed, ENV_E_STATE);
    env_rv rv = feed(r, data, len);
    if (rv != ENV_OK)
        r->failed = true;
    return rv;
}

static env_rv finish(env_reader *r)
{
    env_ctx *c = r->c;
    uint64_t n;
    ENSURE(!r->failed, ENV_E_STATE);
    if (!r->have_header) {
        env_hdr h;
        const char *field = NULL;
        env_rv rv = env_hdr_parse(r->hbuf, r->hlen, &h, &field);
        return parse_fail(c, rv == ENV_OK ? ENV_E_TRUNCATED : rv, rv == ENV_OK ? "body" : field);
    }
    env_rv rv = env_body_layout(r->body_len, r->shift, &n);
    if (rv != ENV_OK)
        return say(c, rv, "the body ends after %llu bytes, not at a chunk boundary",
                   (unsigned long long)r->body_len);
    return open_chunk(r, true);
}

env_rv env_open_final(env_reader *r)
{
    ENSURE(r != NULL, ENV_E_ARGS);
    env_rv rv = finish(r);
    reader_free(r);
    return rv;
}

void env_open_abort(env_reader *r)
{
    reader_free(r);
}

/* ---- one-shot and files -------------------------------------------------------------- */
typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
} membuf;

static int sink_mem(void *arg, const uint8_t *data, size_t len)
{
    membuf *m = arg;
    if (len > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap - m->len < len) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        uint8_t *p = malloc(cap);
        if (p == NULL)
            return -1;
        /* Copy and wipe rather than realloc: the old block may hold plaintext. */
        if (m->len > 0)
            memcpy(p, m->p, m->len);
        env_free(m->p, m->cap);
        m->p = p;
        m->cap = cap;
    }
    if (len > 0)
        memcpy(m->p + m->len, data, len);
    m->len += len;
    return 0;
}

void env_free(void *p, size_t len)
{
    if (p == NULL)
        return;
    env_wipe(p, len);
    free(p);
}

static env_rv mem_result(env_rv rv, membuf *m, uint8_t **out, size_t *out_len)
{
    if (rv != ENV_OK) {
        env_free(m->p, m->cap);
        return rv;
    }
    if (m->p == NULL && (m->p = malloc(1)) == NULL)
        return ENV_E_NOMEM;
    *out = m->p;
    *out_len = m->len;
    return ENV_OK;
}

env_rv env_seal_buf(env_ctx *ctx, const char *context, const uint8_t *dek, size_t dek_len,
                    const void *pt, size_t pt_len, uint8_t **out, size_t *out_len)
{
    membuf m = { NULL, 0, 0 };
    env_writer *w = NULL;
    ENSURE(out != NULL && out_len != NULL, ENV_E_ARGS);
    env_rv rv = env_seal_begin(ctx, context, dek, dek_len, sink_mem, &m, &w);
    if (rv == ENV_OK)
        rv = env_seal_update(w, pt, pt_len);
    if (rv == ENV_OK)
        rv = env_seal_final(w);
    else
        env_seal_abort(w);
    return mem_result(rv, &m, out, out_len);
}

env_rv env_open_buf(env_ctx *ctx, const char *expected_context, const uint8_t *env,
                    size_t env_len, uint8_t **pt, size_t *pt_len)
{
    membuf m = { NULL, 0, 0 };
    env_reader *r = NULL;
    ENSURE(pt != NULL && pt_len != NULL, ENV_E_ARGS);
    env_rv rv = env_open_begin(ctx, expected_context, sink_mem, &m, &r);
    if (rv == ENV_OK)
        rv = env_open_update(r, env, env_len);
    if (rv == ENV_OK)
        rv = env_open_final(r);
    else
        env_open_abort(r);
    return mem_result(rv, &m, pt, pt_len);
}

int env_sink_file(void *file, const uint8_t *data, size_t len)
{
    return fwrite(data, 1, len, file) == len ? 0 : -1;
}

#define IO_BLOCK 65536

env_rv env_seal_file(env_ctx *ctx, const char *context, const uint8_t *dek, size_t dek_len,
                     FILE *in, FILE *out)
{
    env_writer *w = NULL;
    env_rv rv = ENV_OK;
    ENSURE(ctx != NULL && in != NULL && out != NULL, ENV_E_ARGS);
    uint8_t *b = malloc(IO_BLOCK);
    ENSURE(b != NULL, ENV_E_NOMEM);
    GUARD_OUT(env_seal_begin(ctx, context, dek, dek_len, env_sink_file, out, &w));
    for (;;) {
        size_t n = fread(b, 1, IO_BLOCK, in);
        if (n > 0)
            GUARD_OUT(env_seal_update(w, b, n));
        if (n < IO_BLOCK) {
            ENSURE_OUT(!ferror(in), say(ctx, ENV_E_IO, "reading the input failed"));
            break;
        }
    }
    rv = env_seal_final(w); /* frees w either way */
    w = NULL;
    GUARD_OUT(rv);
    ENSURE_OUT(fflush(out) == 0, say(ctx, ENV_E_IO, "writing the output failed"));
out:
    env_seal_abort(w);
    env_free(b, IO_BLOCK);
    return rv;
}

env_rv env_open_file(env_ctx *ctx, const char *expected_context, FILE *in, FILE *out)
{
    env_reader *r = NULL;
    env_rv rv = ENV_OK;
    ENSURE(ctx != NULL && in != NULL && out != NULL, ENV_E_ARGS);
    uint8_t *b = malloc(IO_BLOCK);
    ENSURE(b != NULL, ENV_E_NOMEM);
    GUARD_OUT(env_open_begin(ctx, expected_context, env_sink_file, out, &r));
    for (;;) {
        size_t n = fread(b, 1, IO_BLOCK, in);
        if (n > 0)
            GUARD_OUT(env_open_update(r, b, n));
        if (n < IO_BLOCK) {
            ENSURE_OUT(!ferror(in), say(ctx, ENV_E_IO, "reading the input failed"));
            break;
        }
    }
    rv = env_open_final(r); /* frees r either way */
    r = NULL;
    GUARD_OUT(rv);
    ENSURE_OUT(fflush(out) == 0, say(ctx, ENV_E_IO, "writing the output failed"));
out:
    env_open_abort(r);
    free(b);
    return rv;
}

/* ---- DEKs and re-wrap --------------------------------------------------------------- */
env_rv env_dek_new(env_ctx *ctx, uint8_t **dek, size_t *dek_len)
{
    env_rv rv = ENV_OK;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    env_kb kb;
    ENSURE(ctx != NULL && dek != NULL && dek_len != NULL, ENV_E_ARGS);
    memset(&kb, 0, sizeof(kb));
    GUARD_OUT(need_aead(ctx, ctx->aead, true));
    GUARD_OUT(gen_dek(ctx, ctx->aead, &h));
    GUARD_OUT(wrap(ctx, h, &kb));
    kb.dek_aead = (uint8_t)ctx->aead;
    GUARD_OUT(env_dek_encode(&kb, dek, dek_len));
out:
    destroy(ctx, &h);
    return rv;
}

env_rv env_dek_rewrap(env_ctx *ctx, CK_OBJECT_HANDLE old_kek, const uint8_t *dek, size_t dek_len,
                      uint8_t **out, size_t *out_len)
{
    env_rv rv = ENV_OK;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE, kek;
    env_kb kb;
    const char *field = NULL;
    ENSURE(ctx != NULL && dek != NULL && out != NULL && out_len != NULL, ENV_E_ARGS);
    rv = env_dek_parse(dek, dek_len, &kb, &field);
    ENSURE(rv == ENV_OK, parse_fail(ctx, rv, field));
    GUARD_OUT(resolve_kek(ctx, old_kek, &kb, &kek));
    unsigned alg = dek_aead(&kb);
    GUARD_OUT(unwrap(ctx, kek, &kb, alg, false, false, true, &h));
    memset(&kb, 0, sizeof(kb));
    GUARD_OUT(wrap(ctx, h, &kb));
    kb.dek_aead = (uint8_t)alg;
    GUARD_OUT(env_dek_encode(&kb, out, out_len));
out:
    destroy(ctx, &h);
    return rv;
}

env_rv env_rewrap(env_ctx *ctx, CK_OBJECT_HANDLE old_kek, const uint8_t *env, size_t env_len,
                  uint8_t **new_header, size_t *new_header_len, size_t *old_header_len)
{
    env_rv rv = ENV_OK;
    CK_OBJECT_HANDLE dek = CK_INVALID_HANDLE, kek;
    env_hdr h;
    env_kb kb;
    uint8_t d[ENV_DIGEST_LEN], hdr[ENV_HEADER_MAX];
    size_t hlen;
    const char *field = NULL;
    ENSURE(ctx != NULL && env != NULL && new_header != NULL && new_header_len != NULL &&
               old_header_len != NULL,
           ENV_E_ARGS);
    rv = env_hdr_parse(env, env_len, &h, &field);
    ENSURE(rv == ENV_OK, parse_fail(ctx, rv, field));
    GUARD_OUT(need_aead(ctx, h.aead, false));
    GUARD_OUT(resolve_kek(ctx, old_kek, &h.kb, &kek));
    /* Sec. 5: extractable so it can be wrapped again, never in clear. */
    GUARD_OUT(unwrap(ctx, kek, &h.kb, h.aead, true, true, true, &dek));
    GUARD_OUT(digest(ctx, env, h.data_len, d));
    env_alg ea = { h.aead, h.nonce_base };
    GUARD_OUT(verify_kb(ctx, dek, &ea, d, &h.kb));
    memset(&kb, 0, sizeof(kb));
    GUARD_OUT(wrap(ctx, dek, &kb));
    memcpy(hdr, env, h.data_len);
    GUARD_OUT(seal_kb(ctx, dek, &ea, d, &kb, hdr, h.data_len, &hlen));
    *new_header = malloc(hlen);
    ENSURE_OUT(*new_header != NULL, ENV_E_NOMEM);
    memcpy(*new_header, hdr, hlen);
    *new_header_len = hlen;
    *old_header_len = h.header_len;
out:
    destroy(ctx, &dek);
    return rv;
}

env_rv env_rewrap_buf(env_ctx *ctx, CK_OBJECT_HANDLE old_kek, const uint8_t *env, size_t env_len,
                      uint8_t **out, size_t *out_len)
{
    uint8_t *nh = NULL;
    size_t nl = 0, ol = 0;
    ENSURE(out != NULL && out_len != NULL, ENV_E_ARGS);
    ENV_GUARD(env_rewrap(ctx, old_kek, env, env_len, &nh, &nl, &ol));
    uint8_t *p = malloc(nl + (env_len - ol));
    if (p == NULL) {
        free(nh);
        return ENV_E_NOMEM;
    }
    memcpy(p, nh, nl);
    memcpy(p + nl, env + ol, env_len - ol);
    free(nh);
    *out = p;
    *out_len = nl + (env_len - ol);
    return ENV_OK;
}
