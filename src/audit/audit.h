/* The audit trail (docs/audit.md): one record per operation that touches a
 * key or a login, appended to a per-token SQLite file beside the token
 * (token-N.audit.db), hash-chained with HMAC-SHA256 under the token's audit
 * key, with the chain head and count kept in the token store so that a cut
 * tail is detected. Data operations are aggregated per session, key,
 * function, resource and result and flushed at least every second (on the
 * next call), at session close and at C_Finalize; a policy switch records
 * each one. Decrypt-rate alerts per user and per key over a sliding window.
 * Never holds or writes a key, PIN, nonce or plaintext. */
#ifndef CUSTOS_AUDIT_H
#define CUSTOS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "pkcs11.h"
#include "util/guard.h"
#include "store/store.h"

typedef enum audit_kind {
    AUDIT_EVENT = 0,   /* login, key management, refusal: written at once */
    AUDIT_DATA = 1,    /* encrypt/decrypt/sign/verify/digest-key: aggregated */
    AUDIT_ALERT = 2,   /* a threshold crossed */
} audit_kind;

/* What the entry layer and the core learn about one call. Strings are
 * borrowed for the duration of audit_record (copied inside). */
/* core_audit_begin clears an event field by field (it is on the hot path):
 * a new field must be cleared there too. */
typedef struct audit_event {
    audit_kind kind;
    const char *function;        /* "C_Decrypt" */
    CK_SESSION_HANDLE session;   /* 0 when the call has no session */
    CK_MECHANISM_TYPE mech;      /* CK_UNAVAILABLE_INFORMATION when none */
    const char *user;            /* token user name, "" when not logged in */
    unsigned long roles;         /* CUSTOS_ROLE_* of that user */
    /* the key: */
    CK_OBJECT_HANDLE key;        /* 0 when none */
    char key_label[64];          /* truncated CKA_LABEL, "" when none */
    char key_id[65];             /* CKA_ID as hex, truncated, "" when none */
    char key_family[64];         /* CKA_CUSTOS_FAMILY, "" when none */
    CK_ULONG key_version;        /* CKA_CUSTOS_VERSION, 0 when none */
    /* the resource: */
    bool has_resource_digest;
    uint8_t resource_digest[32]; /* SHA-256 of the AAD context */
    char resource_label[64];     /* label of the key wrapped/unwrapped */
    /* the decision: */
    CK_RV rv;                    /* the call's return value */
    const char *deny_reason;     /* NULL = allowed; else why (no secret) */
    uint64_t count;              /* AUDIT_DATA: how many identical operations
                                    this event stands for (0 means 1): the
                                    core pre-aggregates per session */
} audit_event;

typedef struct audit_policy {
    bool enabled;                /* [audit] enabled = yes (default) */
    bool required;               /* [audit] required: refuse what cannot be recorded */
    bool each_data_op;           /* [audit] data_ops = each (default aggregate) */
    bool syslog;                 /* [audit] syslog = yes: mirror records */
    unsigned flush_ms;           /* aggregate flush interval, default 1000 */
    /* [alerts] */
    unsigned alert_window_s;     /* sliding window, default 60 */
    unsigned long alert_decrypt_per_user; /* 0 = off */
    unsigned long alert_decrypt_per_key;  /* 0 = off */
    bool alert_deny;             /* action = deny (else log) */
} audit_policy;

typedef struct audit_log audit_log;

/* Open (creating if needed, mode 0600) the audit file of the token whose
 * store file is token_path ("X.db" -> "X.audit.db"); the audit key comes
 * from the token store (made on first use). Thread-safe object. */
CK_RV audit_open(const char *token_path, store *st, const audit_policy *p,
                 audit_log **out) CUSTOS_WUR;
/* Flush aggregates and close. NULL is fine. Call it before closing the
 * store given to audit_open (the store must outlive the log: each write
 * advances the head in it). */
void audit_close(audit_log *a);
/* After fork, in the child: forget without flushing or closing. */
void audit_forget_after_fork(audit_log *a);
/* Around fork(), like store_fork_prepare/release: close every audit file
 * connection and hold them (each reconnects on next use), so that no SQLite
 * connection crosses fork. Call audit_fork_prepare BEFORE
 * store_fork_prepare (the lock order is audit file, then token store: the
 * first audit_open of a token reads the store under the audit file's lock)
 * and audit_fork_release after store_fork_release, in parent and child. */
void audit_fork_prepare(void);
void audit_fork_release(void);

/* Record one event. AUDIT_DATA events that were allowed are aggregated
 * (unless each_data_op); everything else is written and chained at once.
 * Returns CKR_OK, or the storage error (CKR_DEVICE_MEMORY for a full disk,
 * CKR_DEVICE_ERROR otherwise) so that a caller under `required` refuses. */
CK_RV audit_record(audit_log *a, const audit_event *e) CUSTOS_WUR;
/* Can a record be written right now? Takes the audit file's write lock
 * and lets it go (nothing written): CKR_DEVICE_ERROR / CKR_DEVICE_MEMORY
 * when it cannot. For fail-closed callers, before an operation that changes
 * something ([audit] required). */
CK_RV audit_ready(audit_log *a) CUSTOS_WUR;
/* The outbox (docs/audit.md, "The outbox"): the record of a change to the
 * token goes into the token file in the change's own transaction
 * (store_object_insert_audited) and joins the chain later, in batches.
 * audit_outbox_row fills the row for event e (its rv is the call's result
 * if the change commits: CKR_OK); audit_outbox_added says one was committed,
 * so that this process drains it within flush_ms, or at once past a batch. */
void audit_outbox_row(audit_log *a, const audit_event *e, audit_row *row);
void audit_outbox_added(audit_log *a);
/* Write pending aggregates now: all of them (force) or those older than
 * flush_ms. */
CK_RV audit_flush(audit_log *a, bool force) CUSTOS_WUR;
/* The same as audit_flush(a, false) for a caller that has just read the
 * clock: now_ns from audit_mono_coarse_ns(). */
CK_RV audit_flush_due(audit_log *a, uint64_t now_ns) CUSTOS_WUR;
/* CLOCK_MONOTONIC_COARSE in nanoseconds (a vDSO read, no system call). */
uint64_t audit_mono_coarse_ns(void);
/* Write pending aggregates of one session (at C_CloseSession). */
CK_RV audit_flush_session(audit_log *a, CK_SESSION_HANDLE s) CUSTOS_WUR;

/* Decrypt-rate alerts: count one decrypt by user on key; returns true when
 * policy is `deny` and a threshold is crossed (the caller refuses with
 * CKR_ACTION_PROHIBITED). Crossing a threshold writes one AUDIT_ALERT
 * record and a syslog warning (once per window per user/key). */
bool audit_decrypt_alert(audit_log *a, const char *user, CK_OBJECT_HANDLE key,
                         const char *key_label);
/* An admin clears the alerts (custos audit clear-alerts): here at once, in
 * every other process of the token within a second (the time of clearing
 * is kept in the token store). Returns the store's error if that could not
 * be written (the alerts of this process are cleared anyway). */
CK_RV audit_clear_alerts(audit_log *a);

/* ---- reading (the CLI, the audit role) ------------------------------------ */
typedef struct audit_verify_result {
    bool ok;
    uint64_t records;            /* records read */
    uint64_t first_bad;          /* seq of the first broken record, 0 if none */
    char reason[160];            /* why it is broken, or "" */
    uint64_t sealed_count;       /* the head the token holds */
    uint64_t unsealed_tail;      /* records after the sealed head (a crash window) */
} audit_verify_result;
/* Verify the whole chain and the sealed head. */
CK_RV audit_verify(const char *token_path, store *st, audit_verify_result *out) CUSTOS_WUR;
/* The highest seq in the audit file (0 when it is empty or missing). */
CK_RV audit_last_seq(const char *token_path, uint64_t *seq) CUSTOS_WUR;
/* Write records with seq > after_seq and time in [since_us, until_us] as
 * JSON lines to fd (docs/audit.md, "Exporting"); *last_seq (may be NULL)
 * gets the highest seq written, or after_seq when none was. */
CK_RV audit_export(const char *token_path, int64_t since_us, int64_t until_us,
                   int fd, uint64_t after_seq, uint64_t *last_seq) CUSTOS_WUR;

#endif
