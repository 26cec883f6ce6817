/* AES-GCM through C_Encrypt and C_Decrypt (PKCS#11 3.2, AES-GCM): reading
 * both CK_GCM_PARAMS layouts. The engine (streaming encryption, decryption
 * that releases plaintext only after the tag verifies) is aead.c. */
#include <stdlib.h>
#include <string.h>

#include "mech/internal.h"

/* The CK_GCM_PARAMS of PKCS#11 2.40 before its errata, without ulIvBits:
 * Java's SunPKCS11 sends it first (INTEROP.md). 40 bytes on LP64, against
 * 48 for the 3.x layout, so ulParameterLen tells them apart. */
typedef struct gcm_params_short {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} gcm_params_short;

_Static_assert(sizeof(gcm_params_short) != sizeof(CK_GCM_PARAMS),
               "the two CK_GCM_PARAMS layouts must differ in size");

/* Bytes. SP 800-38D allows longer IVs, but OpenSSL 3's GCM keeps the IV in
 * a 128-byte buffer; refusing more here keeps the answer the same
 * (CKR_MECHANISM_PARAM_INVALID) whether or not a key has been looked at. */
#define GCM_IV_MAX 128u
#define GCM_AAD_MAX 0xFFFFFFFFul  /* 2^32 - 1 bytes */
/* SP 800-38D sec. 5.2.1.1: at most 2^39 - 256 bits of plaintext. */
#define GCM_TEXT_MAX ((((uint64_t)1) << 36) - 32)

static CK_RV parse(const CK_MECHANISM *m, mech_aead_param *p)
{
    CK_ULONG ivlen, ivbits = 0, aadlen, tagbits;
    CK_BYTE_PTR iv, aad;

    ENSURE(m->pParameter != NULL, CKR_MECHANISM_PARAM_INVALID);
    /* memcpy: the client's struct need not be aligned for us. */
    if (m->ulParameterLen == sizeof(CK_GCM_PARAMS)) {
        CK_GCM_PARAMS g;
        memcpy(&g, m->pParameter, sizeof(g));
        iv = g.pIv, ivlen = g.ulIvLen, ivbits = g.ulIvBits;
        aad = g.pAAD, aadlen = g.ulAADLen, tagbits = g.ulTagBits;
    } else if (m->ulParameterLen == sizeof(gcm_params_short)) {
        gcm_params_short g;
        memcpy(&g, m->pParameter, sizeof(g));
        iv = g.pIv, ivlen = g.ulIvLen;
        aad = g.pAAD, aadlen = g.ulAADLen, tagbits = g.ulTagBits;
    } else {
        return CKR_MECHANISM_PARAM_INVALID;
    }

    ENSURE(ivlen >= 1 && ivlen <= GCM_IV_MAX && iv != NULL, CKR_MECHANISM_PARAM_INVALID);
    /* ulIvBits is informational (3.x errata); when given it must agree. */
    ENSURE(ivbits == 0 || ivbits == ivlen * 8, CKR_MECHANISM_PARAM_INVALID);
    ENSURE(aadlen <= GCM_AAD_MAX && (aad != NULL || aadlen == 0), CKR_MECHANISM_PARAM_INVALID);
    /* SP 800-38D sec. 5.2.1.2 and appendix C: tags shorter than 96 bits
     * need limits on message length and invocations that a token cannot
     * enforce for its callers, so Custos refuses 32- and 64-bit tags. */
    ENSURE(tagbits >= 96 && tagbits <= 128 && tagbits % 8 == 0, CKR_MECHANISM_PARAM_INVALID);

    p->alg = AEAD_AES_GCM;
    p->iv = iv;
    p->ivlen = ivlen;
    p->aad = aad;
    p->aadlen = aadlen;
    p->taglen = tagbits / 8;
    return CKR_OK;
}

const mech_aead_family mech_gcm_family = {
    .parse = parse,
    .text_max = GCM_TEXT_MAX,
};
