/* Private to src/mech/: the header every family context starts with, the
 * ops table of each family (table.c points its rows at them) and the few
 * helpers the families share. Nothing outside src/mech/ includes this. */
#ifndef CUSTOS_MECH_INTERNAL_H
#define CUSTOS_MECH_INTERNAL_H

#include "mech/mech.h"
#include "crypto/crypto.h"

/* Every family context begins with this, so that the opaque mech_ctx the
 * core holds can be turned back into the family's own struct. */
struct mech_ctx {
    const mech_ops *ops; /* the family that allocated it */
    mech_op op;
};

/* From the core's mech_ctx to the family struct whose first member is
 * `base` (C11 6.7.2.1: a pointer to a struct is a pointer to its first
 * member). */
#define MECH_CTX_AS(type, c) ((type *)(void *)(c))

/* Family ops (one file each). */
extern const mech_ops mech_keygen_ops;    /* table.c: rows without operations */
extern const mech_ops mech_aead_ops;      /* aead.c: AES-GCM and ChaCha20-Poly1305 */
extern const mech_ops mech_aes_wrap_ops;  /* aes_wrap.c: RFC 3394 and RFC 5649 */
extern const mech_ops mech_aes_block_ops; /* aes_block.c: ECB, CBC, CBC-PAD, CTR */
extern const mech_ops mech_digest_ops;    /* digest.c */
extern const mech_ops mech_hmac_ops;      /* hmac.c */

/* Family constants behind mech_desc.family. Digest and HMAC rows point at a
 * crypto_md_alg; block rows at a crypto_block_mode; key-wrap rows at this. */
typedef struct mech_kw_family {
    bool pad;                  /* RFC 5649 (true) or RFC 3394 (false) */
    const uint8_t *iv;         /* the only IV accepted as a parameter */
    size_t ivlen;
} mech_kw_family;

/* The AEAD families (aes_gcm.c, chacha.c) share one engine (aead.c):
 * streaming encryption with the tag after the ciphertext, decryption that
 * releases plaintext only once the tag verifies. A family says how to read
 * its parameter; its rows point mech_desc.family at this. */
typedef struct mech_aead_param {
    crypto_aead_alg alg;
    const uint8_t *iv;
    size_t ivlen;
    const uint8_t *aad;
    size_t aadlen;
    size_t taglen;
} mech_aead_param;

typedef struct mech_aead_family {
    /* Read and check pParameter: CKR_MECHANISM_PARAM_INVALID. */
    CK_RV (*parse)(const CK_MECHANISM *m, mech_aead_param *p);
    /* Most plaintext one key and IV may protect (and ciphertext, less the
     * tag, one may open). */
    uint64_t text_max;
} mech_aead_family;

extern const mech_aead_family mech_gcm_family;    /* aes_gcm.c */
extern const mech_aead_family mech_chacha_family; /* chacha.c */

/* The common parameter rule "no parameter": NULL and 0, else
 * CKR_MECHANISM_PARAM_INVALID. */
CK_RV mech_no_param(const CK_MECHANISM *m) CUSTOS_WUR;
/* A key the row may use: type accepted (CKR_KEY_TYPE_INCONSISTENT) and size
 * in range (CKR_KEY_SIZE_RANGE). */
CK_RV mech_check_key(const mech_desc *d, const mech_key *key) CUSTOS_WUR;

#endif
