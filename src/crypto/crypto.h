/* The only interface to OpenSSL. Everything here runs on a private
 * OSSL_LIB_CTX with the default provider loaded explicitly, so Custos never
 * loops back into a PKCS#11 provider that loaded it (INTEROP.md).
 * No OpenSSL type leaks out of src/crypto/. Functions return CKR_OK or a
 * CK_RV the caller can pass straight to the client. */
#ifndef CUSTOS_CRYPTO_H
#define CUSTOS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "pkcs11.h"
#include "util/guard.h"

/* Library-wide set-up and tear-down; crypto_init is idempotent and may be
 * called again in a child after fork (it then builds a fresh context).
 * Calls are counted: each successful crypto_init is balanced by one
 * crypto_fini, and the last one frees. Free every context below first. */
CK_RV crypto_init(void) CUSTOS_WUR;
void crypto_fini(void);
/* After fork, in the child: forget the parent's context without freeing it. */
void crypto_forget_after_fork(void);

/* Random bytes from the DRBG of the private context. */
CK_RV crypto_random(void *buf, size_t len) CUSTOS_WUR;

/* ---- AEAD: AES-GCM (128/192/256-bit keys) and ChaCha20-Poly1305 ------- */
typedef enum crypto_aead_alg {
    AEAD_AES_GCM = 1,
    AEAD_CHACHA20_POLY1305 = 2,   /* 96-bit nonce, RFC 8439 */
    AEAD_XCHACHA20_POLY1305 = 3,  /* 192-bit nonce: ChaCha20-Poly1305 under
                                  * an HChaCha20 subkey (libsodium's, as
                                  * OpenSSL 3.0 has none), 16-byte tag */
} crypto_aead_alg;

typedef struct crypto_aead crypto_aead;

/* A reusable context: allocate once per session, re-init per operation. */
CK_RV crypto_aead_new(crypto_aead **out) CUSTOS_WUR;
void crypto_aead_free(crypto_aead *ctx);
/* Start an operation. key/iv are copied into OpenSSL's state (the caller may
 * wipe its copies afterwards). AES-GCM takes IVs of 1..128 bytes (OpenSSL's
 * limit); the ChaCha variants need 12 (or 24 for X) bytes. CKR_KEY_SIZE_RANGE
 * for a bad key length, CKR_MECHANISM_PARAM_INVALID for a bad IV length.
 * A context is reused by calling init again, also mid-operation. */
CK_RV crypto_aead_init(crypto_aead *ctx, crypto_aead_alg alg, bool encrypt,
                       const uint8_t *key, size_t keylen,
                       const uint8_t *iv, size_t ivlen) CUSTOS_WUR;
/* Feed additional authenticated data (before any update). */
CK_RV crypto_aead_aad(crypto_aead *ctx, const uint8_t *aad, size_t aadlen) CUSTOS_WUR;
/* Encrypt or decrypt inlen bytes into out (exactly inlen bytes written;
 * in == out allowed). */
CK_RV crypto_aead_update(crypto_aead *ctx, const uint8_t *in, size_t inlen,
                         uint8_t *out) CUSTOS_WUR;
/* Finish an encryption; writes taglen (4..16) tag bytes. ChaCha20-Poly1305
 * has only the 16-byte tag (RFC 8439). Another taglen: CKR_ARGUMENTS_BAD.
 * Out-of-order calls: CKR_OPERATION_NOT_INITIALIZED. */
CK_RV crypto_aead_final_encrypt(crypto_aead *ctx, uint8_t *tag, size_t taglen) CUSTOS_WUR;
/* Finish a decryption against the expected tag: CKR_ENCRYPTED_DATA_INVALID
 * when it does not verify. The caller must not release plaintext before. */
CK_RV crypto_aead_final_decrypt(crypto_aead *ctx, const uint8_t *tag, size_t taglen) CUSTOS_WUR;

/* One-shot sealing with AES-256-GCM and a fresh random 96-bit nonce, for
 * secrets at rest. Output layout: nonce(12) | ciphertext(ptlen) | tag(16).
 * out must hold ptlen + CRYPTO_SEAL_OVERHEAD bytes and not overlap pt. */
#define CRYPTO_SEAL_OVERHEAD 28
CK_RV crypto_seal(const uint8_t key[32], const uint8_t *aad, size_t aadlen,
                  const uint8_t *pt, size_t ptlen, uint8_t *out) CUSTOS_WUR;
/* Inverse of crypto_seal; out holds inlen - CRYPTO_SEAL_OVERHEAD bytes.
 * CKR_ENCRYPTED_DATA_INVALID if it does not authenticate (out is wiped). */
CK_RV crypto_unseal(const uint8_t key[32], const uint8_t *aad, size_t aadlen,
                    const uint8_t *in, size_t inlen, uint8_t *out) CUSTOS_WUR;

/* ---- Legacy block modes (only behind policy) -------------------------- */
typedef enum crypto_block_mode {
    BLOCK_AES_ECB = 1,
    BLOCK_AES_CBC = 2,
    BLOCK_AES_CBC_PAD = 3,
    BLOCK_AES_CTR = 4,
} crypto_block_mode;
typedef struct crypto_block crypto_block;
CK_RV crypto_block_new(crypto_block **out) CUSTOS_WUR;
void crypto_block_free(crypto_block *ctx);
CK_RV crypto_block_init(crypto_block *ctx, crypto_block_mode mode, bool encrypt,
                        const uint8_t *key, size_t keylen,
                        const uint8_t *iv, size_t ivlen) CUSTOS_WUR;
/* out must hold inlen + 16 bytes; *outlen receives what was written. */
CK_RV crypto_block_update(crypto_block *ctx, const uint8_t *in, size_t inlen,
                          uint8_t *out, size_t *outlen) CUSTOS_WUR;
/* out must hold 16 bytes. Bad padding on decrypt: CKR_ENCRYPTED_DATA_INVALID.
 * A partial block (or, CBC-PAD decrypt, no block at all): CKR_DATA_LEN_RANGE
 * on encrypt, CKR_ENCRYPTED_DATA_LEN_RANGE on decrypt (PKCS#11 3.2 sec.
 * 5.2: the length alone is wrong). An unknown mode at init:
 * CKR_MECHANISM_INVALID. */
CK_RV crypto_block_final(crypto_block *ctx, uint8_t *out, size_t *outlen) CUSTOS_WUR;

/* ---- AES key wrap: RFC 3394 (pad = false) and RFC 5649 (pad = true) ---- */
/* Output length of wrapping inlen bytes. RFC 3394 needs inlen % 8 == 0 and
 * inlen >= 16. Wrap writes exactly this many bytes to out and sets *outlen
 * (output only). A bad KEK length: CKR_WRAPPING_KEY_SIZE_RANGE (wrap) or
 * CKR_UNWRAPPING_KEY_SIZE_RANGE (unwrap); an input that cannot be wrapped
 * (length, or more than 2^30 bytes): CKR_KEY_SIZE_RANGE. */
size_t crypto_kw_wrapped_len(bool pad, size_t inlen);
CK_RV crypto_kw_wrap(bool pad, const uint8_t *kek, size_t keklen,
                     const uint8_t *in, size_t inlen,
                     uint8_t *out, size_t *outlen) CUSTOS_WUR;
/* out must hold inlen - 8 bytes. CKR_WRAPPED_KEY_INVALID when the integrity
 * check fails, CKR_WRAPPED_KEY_LEN_RANGE for an impossible length. */
CK_RV crypto_kw_unwrap(bool pad, const uint8_t *kek, size_t keklen,
                       const uint8_t *in, size_t inlen,
                       uint8_t *out, size_t *outlen) CUSTOS_WUR;

/* ---- Digests and HMAC ----------------------------------------------- */
typedef enum crypto_md_alg {
    MD_SHA1 = 1, MD_SHA224, MD_SHA256, MD_SHA384, MD_SHA512,
    MD_SHA3_224, MD_SHA3_256, MD_SHA3_384, MD_SHA3_512,
} crypto_md_alg;
size_t crypto_md_size(crypto_md_alg alg);
size_t crypto_md_block_size(crypto_md_alg alg);

typedef struct crypto_md crypto_md;
CK_RV crypto_md_new(crypto_md_alg alg, crypto_md **out) CUSTOS_WUR;
CK_RV crypto_md_update(crypto_md *ctx, const uint8_t *in, size_t inlen) CUSTOS_WUR;
/* Writes crypto_md_size(alg) bytes and resets ctx for the next message. */
CK_RV crypto_md_final(crypto_md *ctx, uint8_t *out) CUSTOS_WUR;
void crypto_md_free(crypto_md *ctx);
CK_RV crypto_md_oneshot(crypto_md_alg alg, const uint8_t *in, size_t inlen,
                        uint8_t *out) CUSTOS_WUR;

typedef struct crypto_hmac crypto_hmac;
CK_RV crypto_hmac_new(crypto_md_alg alg, const uint8_t *key, size_t keylen,
                      crypto_hmac **out) CUSTOS_WUR;
CK_RV crypto_hmac_update(crypto_hmac *ctx, const uint8_t *in, size_t inlen) CUSTOS_WUR;
/* Writes crypto_md_size(alg) bytes and resets ctx for the next message
 * under the same key (no new key schedule). */
CK_RV crypto_hmac_final(crypto_hmac *ctx, uint8_t *out) CUSTOS_WUR;
/* Start a new message on ctx under key, which may differ from the key ctx
 * has: the same key (compared in constant time) keeps its precomputed
 * inner and outer states, another one is scheduled. A message in progress
 * is dropped. */
CK_RV crypto_hmac_restart(crypto_hmac *ctx, const uint8_t *key, size_t keylen) CUSTOS_WUR;
void crypto_hmac_free(crypto_hmac *ctx);

/* ---- PIN key derivation ----------------------------------------------- */
typedef enum crypto_kdf_alg {
    KDF_PBKDF2_SHA256 = 1, /* p1 = iterations */
    KDF_SCRYPT = 2,        /* p1 = log2(N), p2 = r, p3 = p */
} crypto_kdf_alg;
typedef struct crypto_kdf_params {
    crypto_kdf_alg alg;
    uint32_t p1, p2, p3;
} crypto_kdf_params;
/* Derive outlen bytes from a PIN. CKR_ARGUMENTS_BAD for parameters out of
 * the sane range (scrypt log2N 10..22, r 1..32, p 1..16; PBKDF2 >= 1000),
 * an empty salt or outlen 0. out is wiped if derivation fails. */
CK_RV crypto_kdf(const crypto_kdf_params *kp, const uint8_t *pin, size_t pinlen,
                 const uint8_t *salt, size_t saltlen,
                 uint8_t *out, size_t outlen) CUSTOS_WUR;

#endif
