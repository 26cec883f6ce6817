/* The mechanism table: one row per mechanism (designated initialisers in
 * mech/table.c), read by C_GetMechanismList/Info, by policy and by every
 * operation. A row points at the ops of its family (one file per family:
 * aes_gcm.c, chacha.c, aes_wrap.c, aes_block.c, digest.c, hmac.c). An operation a row
 * has no function for answers CKR_MECHANISM_INVALID.
 * mech/ knows nothing of objects or sessions: it works on raw key bytes,
 * handed over by the core, and keeps its own per-operation state. */
#ifndef CUSTOS_MECH_H
#define CUSTOS_MECH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "pkcs11.h"
#include "util/guard.h"

typedef enum mech_op {
    MECH_OP_ENCRYPT = 0,
    MECH_OP_DECRYPT,
    MECH_OP_SIGN,
    MECH_OP_VERIFY,
    MECH_OP_DIGEST,
    MECH_OP_WRAP,    /* C_WrapKey: check_param only; the work is ops->wrap */
    MECH_OP_UNWRAP,  /* C_UnwrapKey: check_param only; the work is ops->unwrap */
    MECH_OP_COUNT
} mech_op;

/* Key bytes lent by the core for the duration of one call. */
typedef struct mech_key {
    const uint8_t *bytes;
    size_t len;
    CK_KEY_TYPE type;
} mech_key;

/* Per-operation state, owned by mech; opaque to the core. */
typedef struct mech_ctx mech_ctx;

typedef struct mech_desc mech_desc;

/* Family functions. All are optional; a missing one means "this mechanism
 * does not do that" (CKR_MECHANISM_INVALID from the core). */
typedef struct mech_ops {
    /* Validate pParameter/ulParameterLen for op before a key is looked at:
     * CKR_MECHANISM_PARAM_INVALID (or CKR_ARGUMENTS_BAD for a NULL where the
     * standard requires one). */
    CK_RV (*check_param)(const mech_desc *d, const CK_MECHANISM *m, mech_op op);
    /* Start an operation (encrypt, decrypt, sign, verify, digest). key is
     * NULL for digests. Copies whatever it needs from m and key. */
    CK_RV (*init)(const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                  const mech_key *key, mech_ctx **out);
    /* Exact length (or, where the standard allows, an upper bound) that
     * update (final = false) or final (final = true) would write for inlen
     * more bytes of input; for one-shot calls the core adds both.
     * For final = true, inlen is the input still to go through update
     * before final (0 at C_*Final), so a one-shot call on a fresh context
     * needs out_len(c, false, n) + out_len(c, true, n): mech_oneshot_len().
     * (AES-GCM decryption writes nothing in update and everything in
     * final, so the final part depends on n.) */
    size_t (*out_len)(mech_ctx *c, bool final, size_t inlen);
    /* One step; out holds out_len(c, false, inlen) bytes; *outlen gets
     * what was written. Digest/sign/verify write nothing. */
    CK_RV (*update)(mech_ctx *c, const uint8_t *in, size_t inlen,
                    uint8_t *out, size_t *outlen);
    /* Finish; out holds out_len(c, true, 0) bytes. For AEAD decryption
     * this is where the tag is checked: CKR_ENCRYPTED_DATA_INVALID,
     * *outlen = 0 and no plaintext released on failure (the bytes of out
     * the decryption used are wiped to zero before returning). */
    CK_RV (*final)(mech_ctx *c, uint8_t *out, size_t *outlen);
    /* Optional fast path for single-part C_Encrypt/C_Decrypt/C_Sign/
     * C_Digest: same contract as update + final together. */
    CK_RV (*oneshot)(mech_ctx *c, const uint8_t *in, size_t inlen,
                     uint8_t *out, size_t *outlen);
    /* Finish a verification: CKR_SIGNATURE_INVALID or
     * CKR_SIGNATURE_LEN_RANGE. Compares in constant time. */
    CK_RV (*verify_final)(mech_ctx *c, const uint8_t *sig, size_t siglen);
    /* Release (wipes any key material held). NULL is fine. */
    void (*free)(mech_ctx *c);
    /* Optional, for hot paths: start a new operation on a context that an
     * earlier init of a row with the same ops returned (finished, failed or
     * abandoned), without allocating. Same contract as init. On failure c
     * stays valid for free (and for another reinit). The core may always
     * use free + init instead. */
    CK_RV (*reinit)(mech_ctx *c, const mech_desc *d, const CK_MECHANISM *m,
                    mech_op op, const mech_key *key);

    /* The additional authenticated data a parameter carries (the
     * resource an AEAD binds ciphertext to, for the audit trail); false
     * when the mechanism has none or the parameter is malformed. d is m's
     * descriptor, as the caller found it. */
    bool (*aad)(const mech_desc *d, const CK_MECHANISM *m, const uint8_t **aad, size_t *len);

    /* Key wrapping: C_WrapKey with wrapping key kek over the raw value of
     * the key being wrapped. wrapped_len gives the output size (0 when the
     * input length cannot be wrapped: CKR_KEY_SIZE_RANGE from the core). */
    size_t (*wrapped_len)(const mech_desc *d, const CK_MECHANISM *m, size_t keylen);
    CK_RV (*wrap)(const mech_desc *d, const CK_MECHANISM *m, const mech_key *kek,
                  const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen);
    /* Unwrap into out (secure memory of at least inlen bytes, the core's):
     * CKR_WRAPPED_KEY_INVALID, CKR_WRAPPED_KEY_LEN_RANGE. */
    CK_RV (*unwrap)(const mech_desc *d, const CK_MECHANISM *m, const mech_key *kek,
                    const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen);
} mech_ops;

/* Row flags beyond CK_MECHANISM_INFO.flags. */
#define MECH_LEGACY     0x1u /* unauthenticated mode: off unless policy allows */
#define MECH_KEYGEN     0x2u /* a key-generation mechanism (CKF_GENERATE) */
#define MECH_DEPRECATED 0x4u /* kept for old clients; documented */
#define MECH_KEY_BITS   0x8u /* min_key/max_key are in bits (generic secret
                              * keys and HMAC, PKCS#11 3.2), not
                              * bytes: use mech_key_size_ok() */

struct mech_desc {
    CK_MECHANISM_TYPE type;
    const char *name;          /* e.g. "CKM_AES_GCM" */
    CK_ULONG min_key;          /* CK_MECHANISM_INFO units (bytes for AES) */
    CK_ULONG max_key;
    CK_FLAGS info_flags;       /* CKF_ENCRYPT | CKF_DECRYPT | ... */
    unsigned flags;            /* MECH_* */
    CK_KEY_TYPE key_types[4];  /* key types accepted; n_key_types of them */
    unsigned n_key_types;
    CK_KEY_TYPE gen_key_type;  /* for key generation mechanisms (MECH_KEYGEN
                                * rows; meaningless elsewhere) */
    const void *family;        /* family-private constants (e.g. the digest) */
    const mech_ops *ops;
};

/* The row for a mechanism, or NULL. */
const mech_desc *mech_find(CK_MECHANISM_TYPE type);
/* Does the row's CK_MECHANISM_INFO.flags allow op? */
bool mech_op_allowed(const mech_desc *d, mech_op op);
/* Row i of the table (0 .. mech_count()-1), for listing. */
const mech_desc *mech_at(size_t i);
size_t mech_count(void);
/* Does the row accept a key of this type? */
bool mech_accepts_key(const mech_desc *d, CK_KEY_TYPE kt);
/* Is a key (or, for MECH_KEYGEN rows, a CKA_VALUE_LEN) of keylen bytes
 * within the row's size range? Handles the bits/bytes units
 * (MECH_KEY_BITS) and AES's three sizes (16, 24, 32). Rows without a size
 * range (min_key = max_key = 0, e.g. digests) accept any length. */
bool mech_key_size_ok(const mech_desc *d, size_t keylen);

/* Output size of a one-shot call (C_Encrypt, C_Decrypt, C_Sign, C_Digest)
 * on a fresh context for inlen bytes of input; see mech_ops.out_len. */
static inline size_t mech_oneshot_len(const mech_desc *d, mech_ctx *c, size_t inlen)
{
    size_t a = d->ops->out_len(c, false, inlen);
    size_t b = d->ops->out_len(c, true, inlen);
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

#endif
