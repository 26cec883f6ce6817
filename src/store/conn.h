/* Opening a connection to one of Custos's SQLite files (the token's and its
 * audit trail's): the settings they share, in one place. Internal to
 * src/store/. */
#ifndef CUSTOS_STORE_CONN_H
#define CUSTOS_STORE_CONN_H

#include <stdbool.h>
#include <sqlite3.h>
#include "pkcs11.h"
#include "util/guard.h"

/* Writers wait this long for another process's transaction to finish. */
#define STORE_BUSY_TIMEOUT_MS 5000

/* Open a connection with the settings every Custos SQLite file needs: no
 * mutex of SQLite's own (callers serialise), defensive mode, no trusted
 * schema, no views, triggers only when asked (the audit file's refuse
 * edits), the busy timeout, WAL (checked: CKR_DEVICE_ERROR where the file
 * system refuses it) and synchronous FULL. map turns SQLite codes from the
 * first reads of the file into CK_RV. */
CK_RV store_connect(const char *path, int flags, bool triggers, CK_RV (*map)(int rc),
                    sqlite3 **out) CUSTOS_WUR;

#endif
