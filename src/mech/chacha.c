/* ChaCha20-Poly1305 (RFC 8439) and XChaCha20-Poly1305
 * (draft-irtf-cfrg-xchacha-03) through C_Encrypt and C_Decrypt as
 * CKM_CHACHA20_POLY1305 (PKCS#11 3.2): reading the parameter with both
 * nonce-length units. The engine is aead.c, shared with AES-GCM. */
#include <string.h>

#include "mech/internal.h"

/* Poly1305 has one tag size (RFC 8439 sec. 2.5); it follows the ciphertext
 * as the GCM tag does. */
#define TAG_LEN 16u
/* RFC 8439 sec. 2.8: a 32-bit block counter starting at 1 gives at most
 * (2^32 - 1) 64-byte blocks per key and nonce (XChaCha: per subkey).
 * OpenSSL would carry the counter into the nonce instead of stopping. */
#define TEXT_MAX ((((uint64_t)1) << 38) - 64)

/* ulNonceLen in either unit, and what it selects. PKCS#11 3.2 gives the
 * length in bits (96, or 192 for XChaCha20); NSS and pkcs11-tool pass
 * bytes (12, 24). No value is in both sets, so both are accepted as
 * themselves (INTEROP.md). The standard's third length, 64 bits (8 bytes),
 * is the original ChaCha20-Poly1305 with a 64-bit nonce and 64-bit
 * counter: not the IETF construction of RFC 8439, and not something
 * OpenSSL's EVP offers, so it stays out of the table and is
 * CKR_MECHANISM_PARAM_INVALID like any other length. */
typedef struct nonce_unit {
    CK_ULONG len;          /* as the caller wrote it */
    size_t bytes;
    crypto_aead_alg alg;
} nonce_unit;

static const nonce_unit NONCES[] = {
    { 96, 12, AEAD_CHACHA20_POLY1305 },
    { 12, 12, AEAD_CHACHA20_POLY1305 },
    { 192, 24, AEAD_XCHACHA20_POLY1305 },
    { 24, 24, AEAD_XCHACHA20_POLY1305 },
};

static CK_RV parse(const CK_MECHANISM *m, mech_aead_param *p)
{
    CK_SALSA20_CHACHA20_POLY1305_PARAMS c;
    const nonce_unit *u = NULL;

    ENSURE(m->pParameter != NULL && m->ulParameterLen == sizeof(c), CKR_MECHANISM_PARAM_INVALID);
    /* memcpy: the client's struct need not be aligned for us. */
    memcpy(&c, m->pParameter, sizeof(c));
    for (size_t i = 0; i < ARRAY_LEN(NONCES); i++)
        if (NONCES[i].len == c.ulNonceLen)
            u = &NONCES[i];
    ENSURE(u != NULL && c.pNonce != NULL, CKR_MECHANISM_PARAM_INVALID);
    ENSURE(c.pAAD != NULL || c.ulAADLen == 0, CKR_MECHANISM_PARAM_INVALID);

    p->alg = u->alg;
    p->iv = c.pNonce;
    p->ivlen = u->bytes;
    p->aad = c.pAAD;
    p->aadlen = c.ulAADLen;
    p->taglen = TAG_LEN;
    return CKR_OK;
}

const mech_aead_family mech_chacha_family = {
    .parse = parse,
    .text_max = TEXT_MAX,
};
