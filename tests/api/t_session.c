/* Sessions, login and PIN management: C_OpenSession flags, session states
 * as login changes, C_Login/C_Logout errors, PIN retry counting and
 * locking, C_InitPIN, C_SetPIN, closing sessions, C_InitToken rules,
 * operation state and C_SessionCancel. PKCS#11 3.2 sec. 5.5, 5.6. */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static CK_STATE state_of(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO si;
    memset(&si, 0, sizeof(si));
    if (F->C_GetSessionInfo(s, &si) != CKR_OK)
        return (CK_STATE)-1;
    return si.state;
}

static CK_FLAGS token_flags(CK_SLOT_ID slot)
{
    CK_TOKEN_INFO ti;
    memset(&ti, 0, sizeof(ti));
    if (F->C_GetTokenInfo(slot, &ti) != CKR_OK)
        return 0;
    return ti.flags;
}

static void test_open_session_flags_and_info(void)
{
    CK_SESSION_HANDLE ro, rw, s;
    CK_SESSION_INFO si;

    RV_REQ(F->C_OpenSession(H.slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK,
           "C_OpenSession(RO)");
    RV_EQ(F->C_GetSessionInfo(ro, &si), CKR_OK, "C_GetSessionInfo(RO)");
    CHECK(si.slotID == H.slot, "session info names the slot");
    CHECK(si.state == CKS_RO_PUBLIC_SESSION, "RO session: CKS_RO_PUBLIC_SESSION");
    CHECK(si.flags == CKF_SERIAL_SESSION, "RO session flags: CKF_SERIAL_SESSION only");
    RV_REQ(F->C_OpenSession(H.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw),
           CKR_OK, "C_OpenSession(RW)");
    CHECK(rw != ro && rw != CK_INVALID_HANDLE, "distinct valid session handles");
    RV_EQ(F->C_GetSessionInfo(rw, &si), CKR_OK, "C_GetSessionInfo(RW)");
    CHECK(si.state == CKS_RW_PUBLIC_SESSION, "RW session: CKS_RW_PUBLIC_SESSION");
    CHECK(si.flags == (CKF_SERIAL_SESSION | CKF_RW_SESSION), "RW session flags");

    RV_EQ(F->C_OpenSession(H.slot, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED,
          "C_OpenSession without CKF_SERIAL_SESSION");
    RV_EQ(F->C_OpenSession(H.slot, CKF_RW_SESSION, NULL, NULL, &s),
          CKR_SESSION_PARALLEL_NOT_SUPPORTED, "C_OpenSession(RW without SERIAL)");
    RV_EQ(F->C_OpenSession(H.slot, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD,
          "C_OpenSession(phSession NULL)");
    RV_EQ(F->C_OpenSession(H_BAD_SLOT, CKF_SERIAL_SESSION, NULL, NULL, &s),
          CKR_SLOT_ID_INVALID, "C_OpenSession(bad slot)");
    RV_EQ(F->C_GetSessionInfo(ro, NULL), CKR_ARGUMENTS_BAD, "C_GetSessionInfo(NULL)");
    RV_EQ(F->C_GetSessionInfo(H_BAD_SESSION, &si), CKR_SESSION_HANDLE_INVALID,
          "C_GetSessionInfo(bad session)");
}

static void test_session_states_follow_login(void)
{
    CK_SESSION_HANDLE ro = h_open(H.slot, 0), rw = h_open(H.slot, 1), s;

    h_login(ro, CKU_USER, H.user_pin);
    CHECK(state_of(ro) == CKS_RO_USER_FUNCTIONS, "RO after user login: CKS_RO_USER_FUNCTIONS");
    CHECK(state_of(rw) == CKS_RW_USER_FUNCTIONS,
          "login is shared: the other RW session is CKS_RW_USER_FUNCTIONS");
    s = h_open(H.slot, 0);
    CHECK(state_of(s) == CKS_RO_USER_FUNCTIONS, "session opened after login is a user session");
    RV_EQ(F->C_Logout(rw), CKR_OK, "C_Logout through another session");
    CHECK(state_of(ro) == CKS_RO_PUBLIC_SESSION, "after logout: CKS_RO_PUBLIC_SESSION");
    CHECK(state_of(rw) == CKS_RW_PUBLIC_SESSION, "after logout: CKS_RW_PUBLIC_SESSION");

    RV_EQ(F->C_CloseSession(ro), CKR_OK, "C_CloseSession(RO)");
    RV_EQ(F->C_CloseSession(s), CKR_OK, "C_CloseSession(RO 2)");
    h_login(rw, CKU_SO, H.so_pin);
    CHECK(state_of(rw) == CKS_RW_SO_FUNCTIONS, "SO login: CKS_RW_SO_FUNCTIONS");
    RV_EQ(F->C_OpenSession(H.slot, CKF_SERIAL_SESSION, NULL, NULL, &s),
          CKR_SESSION_READ_WRITE_SO_EXISTS, "C_OpenSession(RO) while the SO is logged in");
    CK_SESSION_HANDLE rw2 = h_open(H.slot, 1);
    CHECK(state_of(rw2) == CKS_RW_SO_FUNCTIONS, "new RW session shares the SO login");
    RV_EQ(F->C_Logout(rw), CKR_OK, "SO C_Logout");
    CHECK(state_of(rw2) == CKS_RW_PUBLIC_SESSION, "after SO logout: public");
}

static void test_so_login_with_ro_session_open_fails(void)
{
    CK_SESSION_HANDLE ro = h_open(H.slot, 0), rw = h_open(H.slot, 1);
    RV_EQ(h_login_rv(rw, CKU_SO, H.so_pin), CKR_SESSION_READ_ONLY_EXISTS,
          "C_Login(CKU_SO) with an RO session open");
    CHECK(state_of(rw) == CKS_RW_PUBLIC_SESSION, "still public after refused SO login");
    RV_EQ(F->C_CloseSession(ro), CKR_OK, "C_CloseSession(RO)");
    RV_EQ(h_login_rv(rw, CKU_SO, H.so_pin), CKR_OK, "C_Login(CKU_SO) once RO is closed");
    RV_EQ(F->C_Logout(rw), CKR_OK, "C_Logout");
}

static void test_login_errors(void)
{
    CK_SESSION_HANDLE rw = h_open(H.slot, 1);
    RV_EQ(F->C_Logout(rw), CKR_USER_NOT_LOGGED_IN, "C_Logout when not logged in");
    RV_EQ(F->C_Login(rw, 7, (CK_UTF8CHAR_PTR)H.user_pin, strlen(H.user_pin)),
          CKR_USER_TYPE_INVALID, "C_Login(bad user type)");
    RV_EQ(F->C_Login(rw, CKU_USER, NULL, 8), CKR_ARGUMENTS_BAD, "C_Login(pPin NULL, 8)");
    h_login(rw, CKU_USER, H.user_pin);
    RV_EQ(h_login_rv(rw, CKU_USER, H.user_pin), CKR_USER_ALREADY_LOGGED_IN,
          "C_Login(user) twice");
    RV_EQ(h_login_rv(rw, CKU_SO, H.so_pin), CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
          "C_Login(SO) while the user is logged in");
    RV_EQ(F->C_Logout(rw), CKR_OK, "C_Logout");
    h_login(rw, CKU_SO, H.so_pin);
    RV_EQ(h_login_rv(rw, CKU_SO, H.so_pin), CKR_USER_ALREADY_LOGGED_IN, "C_Login(SO) twice");
    RV_EQ(h_login_rv(rw, CKU_USER, H.user_pin), CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
          "C_Login(user) while the SO is logged in");
    RV_EQ(F->C_Logout(rw), CKR_OK, "C_Logout(SO)");
    RV_EQ(F->C_Logout(rw), CKR_USER_NOT_LOGGED_IN, "C_Logout twice");
}

static void test_login_before_user_pin_is_set(void)
{
    h_token t;
    h_new_token(&t, "api-nopin", 0);
    CHECK(!(token_flags(t.slot) & CKF_USER_PIN_INITIALIZED),
          "CKF_USER_PIN_INITIALIZED clear before C_InitPIN");
    CK_SESSION_HANDLE s = h_open(t.slot, 1);
    RV_EQ(h_login_rv(s, CKU_USER, "12345678"), CKR_USER_PIN_NOT_INITIALIZED,
          "C_Login(user) before the user PIN is set");
    h_login(s, CKU_SO, t.so_pin);
    RV_EQ(F->C_InitPIN(s, (CK_UTF8CHAR_PTR)t.user_pin, strlen(t.user_pin)), CKR_OK,
          "C_InitPIN");
    CHECK(token_flags(t.slot) & CKF_USER_PIN_INITIALIZED, "CKF_USER_PIN_INITIALIZED set");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_OK, "C_Login(user) after C_InitPIN");
}

static void test_wrong_pins_count_lock_and_so_unlocks(void)
{
    h_token t;
    char wrong[33], fresh[33];
    h_new_token(&t, "api-lock", 1);
    h_random_hex(wrong, 16);
    h_random_hex(fresh, 16);
    CK_SESSION_HANDLE s = h_open(t.slot, 1);

    /* One failure, then success: COUNT_LOW shows, then clears (sec. 3.2
     * CK_TOKEN_INFO flags: "since the last successful authentication"). */
    RV_EQ(h_login_rv(s, CKU_USER, wrong), CKR_PIN_INCORRECT, "C_Login(wrong PIN)");
    CHECK(token_flags(t.slot) & CKF_USER_PIN_COUNT_LOW, "CKF_USER_PIN_COUNT_LOW after a failure");
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_OK, "C_Login(right PIN)");
    CHECK(!(token_flags(t.slot) & CKF_USER_PIN_COUNT_LOW),
          "CKF_USER_PIN_COUNT_LOW clear after a success");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    for (int i = 1; i <= 9; i++) {
        RV_EQ(h_login_rv(s, CKU_USER, wrong), CKR_PIN_INCORRECT, "C_Login(wrong PIN)");
        CK_FLAGS fl = token_flags(t.slot);
        char msg[96];
        snprintf(msg, sizeof(msg), "CKF_USER_PIN_COUNT_LOW set after %d consecutive failures", i);
        CHECK(fl & CKF_USER_PIN_COUNT_LOW, msg);
        CHECK(!(fl & CKF_USER_PIN_LOCKED), "not locked before max_retries");
        if (i < 9)
            CHECK(!(fl & CKF_USER_PIN_FINAL_TRY), "CKF_USER_PIN_FINAL_TRY only with one try left");
        else
            CHECK(fl & CKF_USER_PIN_FINAL_TRY, "CKF_USER_PIN_FINAL_TRY with one try left");
    }
    RV_IN2(h_login_rv(s, CKU_USER, wrong), CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
           "C_Login(wrong PIN) the 10th time");
    CHECK(token_flags(t.slot) & CKF_USER_PIN_LOCKED, "CKF_USER_PIN_LOCKED after max_retries");
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_PIN_LOCKED, "C_Login(right PIN) when locked");
    CHECK(state_of(s) == CKS_RW_PUBLIC_SESSION, "not logged in when locked");

    /* The SO's own counter is separate. */
    RV_EQ(h_login_rv(s, CKU_SO, wrong), CKR_PIN_INCORRECT, "C_Login(SO, wrong PIN)");
    CHECK(token_flags(t.slot) & CKF_SO_PIN_COUNT_LOW, "CKF_SO_PIN_COUNT_LOW after an SO failure");
    h_login(s, CKU_SO, t.so_pin);
    CHECK(!(token_flags(t.slot) & CKF_SO_PIN_COUNT_LOW), "CKF_SO_PIN_COUNT_LOW cleared");
    RV_EQ(F->C_InitPIN(s, (CK_UTF8CHAR_PTR)fresh, strlen(fresh)), CKR_OK,
          "SO unlocks the user with C_InitPIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout(SO)");
    CK_FLAGS fl = token_flags(t.slot);
    CHECK(!(fl & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY)),
          "lock and final-try flags clear after C_InitPIN");
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_PIN_INCORRECT, "old user PIN no longer works");
    RV_EQ(h_login_rv(s, CKU_USER, fresh), CKR_OK, "new user PIN works");
}

static void test_init_pin_rules(void)
{
    h_token t;
    uint8_t pin[300];
    h_new_token(&t, "api-initpin", 1);
    memset(pin, 'a', sizeof(pin));
    CK_SESSION_HANDLE s = h_open(t.slot, 1);

    RV_EQ(F->C_InitPIN(s, pin, 8), CKR_USER_NOT_LOGGED_IN, "C_InitPIN in a public session");
    h_login(s, CKU_USER, t.user_pin);
    RV_EQ(F->C_InitPIN(s, pin, 8), CKR_USER_NOT_LOGGED_IN, "C_InitPIN as the user");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    h_login(s, CKU_SO, t.so_pin);
    RV_EQ(F->C_InitPIN(s, pin, 3), CKR_PIN_LEN_RANGE, "C_InitPIN(3 bytes)");
    RV_EQ(F->C_InitPIN(s, pin, 256), CKR_PIN_LEN_RANGE, "C_InitPIN(256 bytes)");
    RV_EQ(F->C_InitPIN(s, NULL, 8), CKR_ARGUMENTS_BAD, "C_InitPIN(NULL, 8)");
    RV_EQ(F->C_InitPIN(s, pin, 255), CKR_OK, "C_InitPIN(255 bytes)");
    RV_EQ(F->C_InitPIN(s, pin, 4), CKR_OK, "C_InitPIN(4 bytes)");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout(SO)");
    RV_EQ(F->C_Login(s, CKU_USER, pin, 4), CKR_OK, "user logs in with the 4-byte PIN");
}

static void test_set_pin(void)
{
    h_token t;
    char next[33], third[33], so_next[33];
    h_new_token(&t, "api-setpin", 1);
    h_random_hex(next, 16);
    h_random_hex(third, 16);
    h_random_hex(so_next, 16);
    CK_UTF8CHAR_PTR old = (CK_UTF8CHAR_PTR)t.user_pin;
    CK_ULONG oldlen = strlen(t.user_pin);

    CK_SESSION_HANDLE ro = h_open(t.slot, 0);
    h_login(ro, CKU_USER, t.user_pin);
    RV_EQ(F->C_SetPIN(ro, old, oldlen, (CK_UTF8CHAR_PTR)next, 32), CKR_SESSION_READ_ONLY,
          "C_SetPIN in an RO session");
    RV_EQ(F->C_CloseSession(ro), CKR_OK, "C_CloseSession");

    CK_SESSION_HANDLE s = h_open(t.slot, 1);
    h_login(s, CKU_USER, t.user_pin);
    RV_EQ(F->C_SetPIN(s, (CK_UTF8CHAR_PTR)third, 32, (CK_UTF8CHAR_PTR)next, 32),
          CKR_PIN_INCORRECT, "C_SetPIN(wrong old PIN)");
    RV_EQ(F->C_SetPIN(s, old, oldlen, (CK_UTF8CHAR_PTR)next, 3), CKR_PIN_LEN_RANGE,
          "C_SetPIN(new PIN 3 bytes)");
    RV_EQ(F->C_SetPIN(s, NULL, 8, (CK_UTF8CHAR_PTR)next, 32), CKR_ARGUMENTS_BAD,
          "C_SetPIN(pOldPin NULL)");
    RV_EQ(F->C_SetPIN(s, old, oldlen, NULL, 32), CKR_ARGUMENTS_BAD, "C_SetPIN(pNewPin NULL)");
    RV_EQ(F->C_SetPIN(s, old, oldlen, (CK_UTF8CHAR_PTR)next, 32), CKR_OK, "C_SetPIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_PIN_INCORRECT, "old PIN refused");
    RV_EQ(h_login_rv(s, CKU_USER, next), CKR_OK, "new PIN accepted");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    RV_REQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize");
    s = h_open(t.slot, 1);
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_PIN_INCORRECT,
          "old PIN refused after C_Finalize/C_Initialize");
    RV_EQ(h_login_rv(s, CKU_USER, next), CKR_OK, "new PIN accepted after C_Finalize/C_Initialize");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    /* In the R/W public state C_SetPIN changes the user's PIN (sec. 5.6). */
    RV_EQ(F->C_SetPIN(s, (CK_UTF8CHAR_PTR)next, 32, (CK_UTF8CHAR_PTR)third, 32), CKR_OK,
          "C_SetPIN in a R/W public session");
    RV_EQ(h_login_rv(s, CKU_USER, third), CKR_OK, "PIN set in the public state works");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    /* The SO changes the SO PIN. */
    h_login(s, CKU_SO, t.so_pin);
    RV_EQ(F->C_SetPIN(s, (CK_UTF8CHAR_PTR)t.so_pin, strlen(t.so_pin),
                      (CK_UTF8CHAR_PTR)so_next, 32),
          CKR_OK, "C_SetPIN as SO");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout(SO)");
    RV_EQ(h_login_rv(s, CKU_SO, t.so_pin), CKR_PIN_INCORRECT, "old SO PIN refused");
    RV_EQ(h_login_rv(s, CKU_SO, so_next), CKR_OK, "new SO PIN accepted");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout(SO)");
}

static void test_close_session_and_close_all(void)
{
    CK_SESSION_HANDLE s1 = h_open(H.slot, 1), s2 = h_open(H.slot, 1);
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = { CKA_CLASS, &cls, sizeof(cls) };

    h_login(s1, CKU_USER, H.user_pin);
    CK_OBJECT_HANDLE o = h_data_object(s1, "api-close-session");
    RV_EQ(F->C_GetAttributeValue(s2, o, &a, 1), CKR_OK,
          "session object of s1 visible from s2");
    RV_EQ(F->C_CloseSession(s1), CKR_OK, "C_CloseSession(s1)");
    RV_EQ(F->C_GetAttributeValue(s2, o, &a, 1), CKR_OBJECT_HANDLE_INVALID,
          "session object destroyed with its session");
    CHECK(state_of(s2) == CKS_RW_USER_FUNCTIONS, "still logged in while a session remains");
    RV_EQ(F->C_CloseSession(s1), CKR_SESSION_HANDLE_INVALID, "C_CloseSession twice");
    RV_EQ(F->C_CloseSession(s2), CKR_OK, "C_CloseSession(last)");
    CK_SESSION_HANDLE s3 = h_open(H.slot, 0);
    CHECK(state_of(s3) == CKS_RO_PUBLIC_SESSION, "closing the last session logs out");

    CK_SESSION_HANDLE a1 = h_open(H.slot, 1), a2 = h_open(H.slot, 0);
    h_login(a1, CKU_USER, H.user_pin);
    RV_EQ(F->C_CloseAllSessions(H.slot), CKR_OK, "C_CloseAllSessions");
    CK_SESSION_INFO si;
    RV_EQ(F->C_GetSessionInfo(a1, &si), CKR_SESSION_HANDLE_INVALID, "a1 closed");
    RV_EQ(F->C_GetSessionInfo(a2, &si), CKR_SESSION_HANDLE_INVALID, "a2 closed");
    RV_EQ(F->C_GetSessionInfo(s3, &si), CKR_SESSION_HANDLE_INVALID, "s3 closed");
    CK_SESSION_HANDLE s4 = h_open(H.slot, 1);
    CHECK(state_of(s4) == CKS_RW_PUBLIC_SESSION, "C_CloseAllSessions logs out");
    RV_EQ(F->C_CloseAllSessions(H_BAD_SLOT), CKR_SLOT_ID_INVALID,
          "C_CloseAllSessions(bad slot)");
}

/* More sessions than the session table has parts (16): every handle stays
 * its own session, closing some leaves the others, and C_CloseAllSessions
 * reaches every part. */
static void test_many_sessions_across_the_table(void)
{
    enum { N = 50 };
    CK_SESSION_HANDLE h[N];
    CK_SESSION_INFO si;
    for (int i = 0; i < N; i++) {
        h[i] = h_open(H.slot, i % 2);
        for (int k = 0; k < i; k++)
            CHECK(h[k] != h[i], "session handles are unique");
    }
    for (int i = 0; i < N; i += 3)
        RV_EQ(F->C_CloseSession(h[i]), CKR_OK, "C_CloseSession of every third");
    for (int i = 0; i < N; i++) {
        CK_RV want = i % 3 == 0 ? CKR_SESSION_HANDLE_INVALID : CKR_OK;
        RV_EQ(F->C_GetSessionInfo(h[i], &si), want, "closed ones gone, others there");
        if (want == CKR_OK)
            CHECK((si.flags & CKF_RW_SESSION) == (i % 2 ? CKF_RW_SESSION : 0u),
                  "each handle is still its own session");
    }
    RV_EQ(F->C_CloseAllSessions(H.slot), CKR_OK, "C_CloseAllSessions");
    for (int i = 0; i < N; i++)
        RV_EQ(F->C_GetSessionInfo(h[i], &si), CKR_SESSION_HANDLE_INVALID, "all closed");
    /* A handle never given out, in every part of the table. */
    for (CK_SESSION_HANDLE x = h[N - 1] + 1; x < h[N - 1] + 20; x++)
        RV_EQ(F->C_GetSessionInfo(x, &si), CKR_SESSION_HANDLE_INVALID, "unknown handle");
}

static void test_init_token_rules(void)
{
    h_token t;
    char name[17], wrong[33];
    CK_UTF8CHAR label[32];
    h_new_token(&t, "api-reinit", 1);
    h_random_hex(name, 8);
    h_random_hex(wrong, 16);
    h_pad(label, sizeof(label), name);

    CK_SESSION_HANDLE s = h_open(t.slot, 1);
    h_login(s, CKU_USER, t.user_pin);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE tmpl[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_TOKEN, &h_true, 1 },
        { CKA_LABEL, "api-wiped", 9 },
    };
    CK_OBJECT_HANDLE o;
    RV_REQ(F->C_CreateObject(s, tmpl, NELEM(tmpl), &o), CKR_OK, "token data object");
    RV_EQ(F->C_InitToken(t.slot, (CK_UTF8CHAR_PTR)t.so_pin, strlen(t.so_pin), label),
          CKR_SESSION_EXISTS, "C_InitToken with a session open");
    RV_EQ(F->C_CloseSession(s), CKR_OK, "C_CloseSession");

    CK_ULONG nslots = 0, nslots2 = 0;
    RV_EQ(F->C_GetSlotList(CK_FALSE, NULL, &nslots), CKR_OK, "C_GetSlotList");
    RV_EQ(F->C_InitToken(t.slot, (CK_UTF8CHAR_PTR)wrong, 32, label), CKR_PIN_INCORRECT,
          "C_InitToken(wrong SO PIN)");
    RV_EQ(F->C_InitToken(t.slot, (CK_UTF8CHAR_PTR)t.so_pin, strlen(t.so_pin), NULL),
          CKR_ARGUMENTS_BAD, "C_InitToken(pLabel NULL)");
    RV_EQ(F->C_InitToken(t.slot, (CK_UTF8CHAR_PTR)t.so_pin, strlen(t.so_pin), label), CKR_OK,
          "C_InitToken(right SO PIN) re-initialises");
    RV_EQ(F->C_GetSlotList(CK_FALSE, NULL, &nslots2), CKR_OK, "C_GetSlotList");
    CHECK(nslots2 == nslots, "re-initialising adds no slot");
    CK_TOKEN_INFO ti;
    RV_EQ(F->C_GetTokenInfo(t.slot, &ti), CKR_OK, "C_GetTokenInfo");
    CHECK(memcmp(ti.label, label, 32) == 0, "token relabelled");
    CHECK(!(ti.flags & CKF_USER_PIN_INITIALIZED), "user PIN wiped");

    s = h_open(t.slot, 1);
    RV_EQ(h_login_rv(s, CKU_USER, t.user_pin), CKR_USER_PIN_NOT_INITIALIZED,
          "old user PIN gone");
    h_login(s, CKU_SO, t.so_pin);
    RV_EQ(F->C_InitPIN(s, (CK_UTF8CHAR_PTR)t.user_pin, strlen(t.user_pin)), CKR_OK,
          "C_InitPIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    h_login(s, CKU_USER, t.user_pin);
    CK_ATTRIBUTE find[] = { { CKA_LABEL, "api-wiped", 9 } };
    CHECK(h_count(s, find, 1) == 0, "objects wiped by C_InitToken");
}

static void test_operation_state_not_supported(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t buf[256];
    CK_ULONG len = sizeof(buf);
    CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_IN2(F->C_GetOperationState(s, buf, &len), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_STATE_UNSAVEABLE, "C_GetOperationState");
    memset(buf, 0, sizeof(buf));
    RV_IN2(F->C_SetOperationState(s, buf, 64, 0, 0), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_SAVED_STATE_INVALID, "C_SetOperationState(garbage)");
}

static void test_session_cancel(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv[12] = { 1 }, pt[16] = { 0 }, ct[64];
    CK_ULONG len = sizeof(ct), n;
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    CK_OBJECT_HANDLE o;
    h_gcm(&p, &m, iv, sizeof(iv), NULL, 0, 128);

    RV_REQ(F->C_EncryptInit(s, &m, k), CKR_OK, "C_EncryptInit");
    RV_EQ(F30->C_SessionCancel(s, CKF_ENCRYPT), CKR_OK, "C_SessionCancel(CKF_ENCRYPT)");
    RV_EQ(F->C_Encrypt(s, pt, sizeof(pt), ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_Encrypt after C_SessionCancel");
    RV_EQ(F->C_EncryptInit(s, &m, k), CKR_OK, "C_EncryptInit after C_SessionCancel");
    RV_EQ(F->C_FindObjectsInit(s, NULL, 0), CKR_OK, "C_FindObjectsInit");
    RV_EQ(F30->C_SessionCancel(s, CKF_FIND_OBJECTS), CKR_OK,
          "C_SessionCancel(CKF_FIND_OBJECTS)");
    RV_EQ(F->C_FindObjects(s, &o, 1, &n), CKR_OPERATION_NOT_INITIALIZED,
          "C_FindObjects after C_SessionCancel");
    len = sizeof(ct);
    RV_EQ(F->C_Encrypt(s, pt, sizeof(pt), ct, &len), CKR_OK,
          "encryption not cancelled by CKF_FIND_OBJECTS");
    RV_EQ(F30->C_SessionCancel(H_BAD_SESSION, CKF_ENCRYPT), CKR_SESSION_HANDLE_INVALID,
          "C_SessionCancel(bad session)");
}

static const h_case CASES[] = {
    H_CASE(test_open_session_flags_and_info),
    H_CASE(test_session_states_follow_login),
    H_CASE(test_so_login_with_ro_session_open_fails),
    H_CASE(test_login_errors),
    H_CASE(test_login_before_user_pin_is_set),
    H_CASE(test_wrong_pins_count_lock_and_so_unlocks),
    H_CASE(test_init_pin_rules),
    H_CASE(test_set_pin),
    H_CASE(test_close_session_and_close_all),
    H_CASE(test_many_sessions_across_the_table),
    H_CASE(test_init_token_rules),
    H_CASE(test_operation_state_not_supported),
    H_CASE(test_session_cancel),
};

int t_session_register(void)
{
    return h_add_suite("session", CASES, NELEM(CASES));
}
