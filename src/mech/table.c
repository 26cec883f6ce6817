/* The mechanism table: one row per mechanism Custos offers, sorted by
 * CKM_ value so that mech_find is a binary search (it runs on every
 * C_*Init). C_GetMechanismList/Info, policy and every operation read it. */
#include "mech/internal.h"

/* Key generation rows have no operation: the core draws the key bytes
 * from crypto_random. The row exists for C_GetMechanismList/Info and to
 * name the key type. */
const mech_ops mech_keygen_ops = { 0 };

static const crypto_md_alg md_sha224 = MD_SHA224;
static const crypto_md_alg md_sha256 = MD_SHA256;
static const crypto_md_alg md_sha384 = MD_SHA384;
static const crypto_md_alg md_sha512 = MD_SHA512;
static const crypto_md_alg md_sha3_224 = MD_SHA3_224;
static const crypto_md_alg md_sha3_256 = MD_SHA3_256;
static const crypto_md_alg md_sha3_384 = MD_SHA3_384;
static const crypto_md_alg md_sha3_512 = MD_SHA3_512;

static const crypto_block_mode blk_ecb = BLOCK_AES_ECB;
static const crypto_block_mode blk_cbc = BLOCK_AES_CBC;
static const crypto_block_mode blk_cbc_pad = BLOCK_AES_CBC_PAD;
static const crypto_block_mode blk_ctr = BLOCK_AES_CTR;

/* RFC 3394 sec. 2.2.3.1 default IV; RFC 5649 sec. 3 alternative IV. */
static const uint8_t kw_default_iv[8] = { 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6 };
static const uint8_t kwp_aiv[4] = { 0xA6, 0x59, 0x59, 0xA6 };
static const mech_kw_family kw_rfc3394 = { .pad = false, .iv = kw_default_iv, .ivlen = 8 };
static const mech_kw_family kw_rfc5649 = { .pad = true, .iv = kwp_aiv, .ivlen = 4 };

/* Digests take no key and report no key sizes (PKCS#11 3.2, digest mechanisms). */
#define DIGEST_ROW(ckm, md)                                                    \
    {                                                                          \
        .type = ckm, .name = #ckm, .info_flags = CKF_DIGEST,                   \
        .family = &md, .ops = &mech_digest_ops,                                \
    }

/* HMAC keys are generic secrets, so their sizes are reported in bits, as
 * for CKM_GENERIC_SECRET_KEY_GEN. 128 bits minimum: SP 800-107r1 sec. 5.3.4
 * wants the key to carry at least the security strength wanted; 4096 bits
 * maximum is a sanity bound (longer keys are hashed down anyway). */
#define HMAC_ROW(ckm, ckk, md)                                                 \
    {                                                                          \
        .type = ckm, .name = #ckm, .min_key = 128, .max_key = 4096,            \
        .info_flags = CKF_SIGN | CKF_VERIFY, .flags = MECH_KEY_BITS,           \
        .key_types = { CKK_GENERIC_SECRET, ckk }, .n_key_types = 2,            \
        .family = &md, .ops = &mech_hmac_ops,                                  \
    }

/* AES encryption rows: key sizes in bytes (PKCS#11 3.2, AES). */
#define AES_BLOCK_ROW(ckm, mode)                                               \
    {                                                                          \
        .type = ckm, .name = #ckm, .min_key = 16, .max_key = 32,               \
        .info_flags = CKF_ENCRYPT | CKF_DECRYPT, .flags = MECH_LEGACY,         \
        .key_types = { CKK_AES }, .n_key_types = 1,                            \
        .family = &mode, .ops = &mech_aes_block_ops,                           \
    }

#define AES_WRAP_ROW(ckm, fam, extra)                                          \
    {                                                                          \
        .type = ckm, .name = #ckm, .min_key = 16, .max_key = 32,               \
        .info_flags = CKF_WRAP | CKF_UNWRAP, .flags = extra,                   \
        .key_types = { CKK_AES }, .n_key_types = 1,                            \
        .family = &fam, .ops = &mech_aes_wrap_ops,                             \
    }

/* Sorted by type: test_table_is_sorted_and_unique keeps it so. */
static const mech_desc table[] = {
    DIGEST_ROW(CKM_SHA256, md_sha256),
    HMAC_ROW(CKM_SHA256_HMAC, CKK_SHA256_HMAC, md_sha256),
    DIGEST_ROW(CKM_SHA224, md_sha224),
    HMAC_ROW(CKM_SHA224_HMAC, CKK_SHA224_HMAC, md_sha224),
    DIGEST_ROW(CKM_SHA384, md_sha384),
    HMAC_ROW(CKM_SHA384_HMAC, CKK_SHA384_HMAC, md_sha384),
    DIGEST_ROW(CKM_SHA512, md_sha512),
    HMAC_ROW(CKM_SHA512_HMAC, CKK_SHA512_HMAC, md_sha512),
    DIGEST_ROW(CKM_SHA3_256, md_sha3_256),
    HMAC_ROW(CKM_SHA3_256_HMAC, CKK_SHA3_256_HMAC, md_sha3_256),
    DIGEST_ROW(CKM_SHA3_224, md_sha3_224),
    HMAC_ROW(CKM_SHA3_224_HMAC, CKK_SHA3_224_HMAC, md_sha3_224),
    DIGEST_ROW(CKM_SHA3_384, md_sha3_384),
    HMAC_ROW(CKM_SHA3_384_HMAC, CKK_SHA3_384_HMAC, md_sha3_384),
    DIGEST_ROW(CKM_SHA3_512, md_sha3_512),
    HMAC_ROW(CKM_SHA3_512_HMAC, CKK_SHA3_512_HMAC, md_sha3_512),
    /* Generic secret sizes are in bits (PKCS#11 3.2, generic
     * secret key generation): 128..4096 bits, i.e. 16..512 bytes. */
    {
        .type = CKM_GENERIC_SECRET_KEY_GEN,
        .name = "CKM_GENERIC_SECRET_KEY_GEN",
        .min_key = 128,
        .max_key = 4096,
        .info_flags = CKF_GENERATE,
        .flags = MECH_KEYGEN | MECH_KEY_BITS,
        .gen_key_type = CKK_GENERIC_SECRET,
        .ops = &mech_keygen_ops,
    },
    {
        .type = CKM_AES_KEY_GEN,
        .name = "CKM_AES_KEY_GEN",
        .min_key = 16,
        .max_key = 32,
        .info_flags = CKF_GENERATE,
        .flags = MECH_KEYGEN,
        .gen_key_type = CKK_AES,
        .ops = &mech_keygen_ops,
    },
    AES_BLOCK_ROW(CKM_AES_ECB, blk_ecb),
    AES_BLOCK_ROW(CKM_AES_CBC, blk_cbc),
    AES_BLOCK_ROW(CKM_AES_CBC_PAD, blk_cbc_pad),
    AES_BLOCK_ROW(CKM_AES_CTR, blk_ctr),
    {
        .type = CKM_AES_GCM,
        .name = "CKM_AES_GCM",
        .min_key = 16,
        .max_key = 32,
        .info_flags = CKF_ENCRYPT | CKF_DECRYPT | CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT |
                      CKF_MULTI_MESSAGE,
        .key_types = { CKK_AES },
        .n_key_types = 1,
        .family = &mech_gcm_family,
        .ops = &mech_aead_ops,
    },
    /* ChaCha20 keys have one size, 32 bytes (RFC 8439 sec. 2.3). */
    {
        .type = CKM_CHACHA20_KEY_GEN,
        .name = "CKM_CHACHA20_KEY_GEN",
        .min_key = 32,
        .max_key = 32,
        .info_flags = CKF_GENERATE,
        .flags = MECH_KEYGEN,
        .gen_key_type = CKK_CHACHA20,
        .ops = &mech_keygen_ops,
    },
    AES_WRAP_ROW(CKM_AES_KEY_WRAP, kw_rfc3394, 0),
    /* 0x210A is RFC 5649 here, as in 2.40-era tokens and pkcs11-tool 0.23
     * (docs/mechanisms.md); deprecated by PKCS#11 3.x. */
    AES_WRAP_ROW(CKM_AES_KEY_WRAP_PAD, kw_rfc5649, MECH_DEPRECATED),
    AES_WRAP_ROW(CKM_AES_KEY_WRAP_KWP, kw_rfc5649, 0),
    /* 96-bit nonce: RFC 8439; 192-bit nonce: XChaCha20-Poly1305 (chacha.c). */
    {
        .type = CKM_CHACHA20_POLY1305,
        .name = "CKM_CHACHA20_POLY1305",
        .min_key = 32,
        .max_key = 32,
        .info_flags = CKF_ENCRYPT | CKF_DECRYPT | CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT |
                      CKF_MULTI_MESSAGE,
        .key_types = { CKK_CHACHA20 },
        .n_key_types = 1,
        .family = &mech_chacha_family,
        .ops = &mech_aead_ops,
    },
};

const mech_desc *mech_find(CK_MECHANISM_TYPE type)
{
    size_t lo = 0, hi = ARRAY_LEN(table);

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (table[mid].type == type)
            return &table[mid];
        if (table[mid].type < type)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const mech_desc *mech_at(size_t i)
{
    return i < ARRAY_LEN(table) ? &table[i] : NULL;
}

size_t mech_count(void)
{
    return ARRAY_LEN(table);
}

bool mech_accepts_key(const mech_desc *d, CK_KEY_TYPE kt)
{
    for (unsigned i = 0; i < d->n_key_types && i < ARRAY_LEN(d->key_types); i++)
        if (d->key_types[i] == kt)
            return true;
    return false;
}

bool mech_key_size_ok(const mech_desc *d, size_t keylen)
{
    CK_KEY_TYPE kt = (d->flags & MECH_KEYGEN) ? d->gen_key_type
                     : d->n_key_types          ? d->key_types[0]
                                               : CK_UNAVAILABLE_INFORMATION;

    if (d->min_key == 0 && d->max_key == 0)
        return true;
    /* FIPS 197: AES has exactly three key sizes. */
    if (kt == CKK_AES)
        return keylen == 16 || keylen == 24 || keylen == 32;
    if (d->flags & MECH_KEY_BITS) {
        if (keylen > SIZE_MAX / 8)
            return false;
        keylen *= 8;
    }
    return keylen >= d->min_key && keylen <= d->max_key;
}

/* CK_MECHANISM_INFO.flags that let each operation run. */
static const CK_FLAGS op_flag[MECH_OP_COUNT] = {
    [MECH_OP_ENCRYPT] = CKF_ENCRYPT,
    [MECH_OP_DECRYPT] = CKF_DECRYPT,
    [MECH_OP_SIGN] = CKF_SIGN,
    [MECH_OP_VERIFY] = CKF_VERIFY,
    [MECH_OP_DIGEST] = CKF_DIGEST,
    [MECH_OP_WRAP] = CKF_WRAP,
    [MECH_OP_UNWRAP] = CKF_UNWRAP,
};

bool mech_op_allowed(const mech_desc *d, mech_op op)
{
    return (unsigned)op < MECH_OP_COUNT && (d->info_flags & op_flag[op]) != 0;
}

CK_RV mech_no_param(const CK_MECHANISM *m)
{
    ENSURE(m->pParameter == NULL && m->ulParameterLen == 0, CKR_MECHANISM_PARAM_INVALID);
    return CKR_OK;
}

CK_RV mech_check_key(const mech_desc *d, const mech_key *key)
{
    ENSURE(key != NULL && (key->bytes != NULL || key->len == 0), CKR_ARGUMENTS_BAD);
    ENSURE(mech_accepts_key(d, key->type), CKR_KEY_TYPE_INCONSISTENT);
    ENSURE(mech_key_size_ok(d, key->len), CKR_KEY_SIZE_RANGE);
    return CKR_OK;
}
