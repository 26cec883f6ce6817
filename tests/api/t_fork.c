/* Fork safety: after fork() the child sees an uninitialised library
 * (CKR_CRYPTOKI_NOT_INITIALIZED), C_Initialize gives CKR_OK, and it can log
 * in and use a token key; the parent's sessions and login are untouched.
 * The child makes no CUnit calls: its exit status says which step failed.
 * PKCS#11 3.2 sec. 5.1.1 (applications and processes). */
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const CHILD_STEPS[] = {
    [10] = "a call before C_Initialize did not give CKR_CRYPTOKI_NOT_INITIALIZED",
    [11] = "C_OpenSession before C_Initialize did not give CKR_CRYPTOKI_NOT_INITIALIZED",
    [12] = "C_Initialize in the child did not give CKR_OK",
    [13] = "C_OpenSession in the child failed",
    [14] = "C_Login in the child did not give CKR_OK",
    [15] = "the token key was not found exactly once in the child",
    [16] = "the GCM round trip in the child failed",
    [17] = "C_Logout in the child failed",
    [18] = "C_Finalize in the child failed",
};

static int child(CK_SLOT_ID slot, const char *label)
{
    CK_INFO info;
    CK_SESSION_HANDLE s;
    if (F->C_GetInfo(&info) != CKR_CRYPTOKI_NOT_INITIALIZED)
        return 10;
    if (F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) !=
        CKR_CRYPTOKI_NOT_INITIALIZED)
        return 11;
    if (F->C_Initialize(NULL) != CKR_OK)
        return 12;
    if (F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return 13;
    if (F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)H.user_pin, strlen(H.user_pin)) != CKR_OK)
        return 14;
    CK_ATTRIBUTE byl = { CKA_LABEL, (void *)label, strlen(label) };
    CK_OBJECT_HANDLE k[2];
    CK_ULONG n = 0;
    if (F->C_FindObjectsInit(s, &byl, 1) != CKR_OK ||
        F->C_FindObjects(s, k, 2, &n) != CKR_OK || F->C_FindObjectsFinal(s) != CKR_OK ||
        n != 1)
        return 15;
    if (h_gcm_round_trip(s, k[0], 0xc0000001u) != CKR_OK)
        return 16;
    if (F->C_Logout(s) != CKR_OK)
        return 17;
    if (F->C_Finalize(NULL) != CKR_OK)
        return 18;
    return 0;
}

static void test_child_reinitialises_and_parent_continues(void)
{
    char label[40], r[17];
    h_random_hex(r, 8);
    snprintf(label, sizeof(label), "api-fork-%s", r);
    CK_SESSION_HANDLE s = h_user_session();
    CK_ATTRIBUTE tok[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, label, strlen(label) } };
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, tok, NELEM(tok));
    RV_EQ(h_gcm_round_trip(s, k, 0xa0000001u), CKR_OK, "parent round trip before fork");

    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0)
        _exit(child(H.slot, label)); /* _exit: no atexit, no temp dir removal */

    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    char msg[256];
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 0)
        snprintf(msg, sizeof(msg), "child: all steps passed");
    else if (code > 0 && (size_t)code < NELEM(CHILD_STEPS) && CHILD_STEPS[code] != NULL)
        snprintf(msg, sizeof(msg), "child: %s (exit %d)", CHILD_STEPS[code], code);
    else if (WIFSIGNALED(status))
        snprintf(msg, sizeof(msg), "child killed by signal %d", WTERMSIG(status));
    else
        snprintf(msg, sizeof(msg), "child exit %d (1 under valgrind: errors in the child)",
                 code);
    CHECK(code == 0, msg);

    CK_SESSION_INFO si;
    RV_EQ(F->C_GetSessionInfo(s, &si), CKR_OK, "parent session still valid after the fork");
    CHECK(si.state == CKS_RW_USER_FUNCTIONS, "parent still logged in after the fork");
    RV_EQ(h_gcm_round_trip(s, k, 0xa0000002u), CKR_OK, "parent round trip after the fork");
    CK_SESSION_HANDLE s2 = h_open(H.slot, 1);
    RV_EQ(h_gcm_round_trip(s2, k, 0xa0000003u), CKR_OK, "parent opens a new session after the fork");
    RV_EQ(F->C_DestroyObject(s, k), CKR_OK, "destroy the token key");
}

static void test_child_initialize_while_parent_finalized(void)
{
    /* The parent has finalized before forking: the child starts from a
     * clean library exactly as after an exec. */
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize in the parent");
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        int rc = 0;
        if (F->C_Initialize(NULL) != CKR_OK)
            rc = 12;
        else if (F->C_Finalize(NULL) != CKR_OK)
            rc = 18;
        _exit(rc);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child of a finalized parent initialises and finalizes");
    RV_EQ(F->C_Initialize(NULL), CKR_OK, "parent initialises again");
}

static const h_case CASES[] = {
    H_CASE(test_child_reinitialises_and_parent_continues),
    H_CASE(test_child_initialize_while_parent_finalized),
};

int t_fork_register(void)
{
    return h_add_suite("fork", CASES, NELEM(CASES));
}
