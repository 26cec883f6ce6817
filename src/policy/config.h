/* Custos configuration: where tokens live and what policy holds. Read from
 * the INI file named by CUSTOS_CONF, else /etc/custos/custos.conf, else
 * built-in defaults with the store under $XDG_DATA_HOME/custos (or
 * ~/.local/share/custos). Parsed with libinih. Configuration names paths and
 * policies, never keys or PINs. Documented in docs/configuration.md.
 *
 *   [store]
 *   path = /var/lib/custos          ; one SQLite file per token in here
 *   mmap_mib = 2047                 ; read token files through a map this big (0: pread)
 *   [pin]
 *   max_retries = 10                ; wrong PINs before the PIN locks (1..100)
 *   min_length = 4                  ; bytes (1..255)
 *   max_length = 255
 *   kdf = scrypt                    ; scrypt | pbkdf2 (for PINs set from now on)
 *   scrypt_log2n = 15               ; N = 2^15, r = 8, p = 1 (10..22)
 *   pbkdf2_iterations = 600000      ; OWASP 2023 for PBKDF2-HMAC-SHA256 (>= 1000)
 *   [policy]
 *   legacy_modes = no               ; yes: allow unauthenticated AES ECB/CBC/CTR
 *   caller_iv = count               ; count | refuse: caller IVs at C_EncryptInit
 *   [audit]
 *   enabled = yes                   ; the audit trail (docs/audit.md)
 *   required = no                   ; yes: refuse what cannot be recorded
 *   data_ops = aggregate            ; aggregate | each
 *   flush_ms = 1000                 ; aggregates written at least this often
 *   syslog = no                     ; yes: mirror every record to syslog
 *   [alerts]
 *   window_seconds = 60
 *   decrypt_per_user = 0            ; decrypts per window per user (0: off)
 *   decrypt_per_key = 0             ; decrypts per window per key (0: off)
 *   action = log                    ; log | deny
 */
#ifndef CUSTOS_POLICY_CONFIG_H
#define CUSTOS_POLICY_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include "pkcs11.h"
#include "util/guard.h"
#include "crypto/crypto.h"
#include "audit/audit.h"

/* SQLite maps at most 0x7fff0000 bytes: 2047 MiB. */
#define CONFIG_MMAP_MIB_MAX 2047u

typedef struct custos_config {
    char store_path[PATH_MAX];
    unsigned store_mmap_mib;      /* [store] mmap_mib, 0: off */
    char source[PATH_MAX];        /* the file read, or "" for built-in defaults */
    unsigned pin_max_retries;
    unsigned pin_min_len;
    unsigned pin_max_len;
    crypto_kdf_params kdf;        /* for PINs set from now on */
    bool legacy_modes;
    bool caller_iv_refuse;        /* [policy] caller_iv = refuse */
    audit_policy audit;
} custos_config;

/* Fill cfg with defaults, then read the file CUSTOS_CONF names (an error if
 * it is set but unreadable), else /etc/custos/custos.conf if it exists.
 * A bad file gives CKR_GENERAL_ERROR with a one-line reason in err (never a
 * secret). */
CK_RV config_load(custos_config *cfg, char *err, size_t errlen) CUSTOS_WUR;
/* Same from an explicit path (for tests and the CLI). */
CK_RV config_load_file(custos_config *cfg, const char *path, char *err,
                       size_t errlen) CUSTOS_WUR;
void config_defaults(custos_config *cfg);

#endif
