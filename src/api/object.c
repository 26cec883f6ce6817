/* PKCS#11 3.2 sec. 5.7, object management. */
#include "api/api.h"

/* A template pointer may be NULL only with a count of zero. */
#define TEMPLATE_OK(t, n) ((t) != NULL || (n) == 0)

CK_RV C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                     CK_OBJECT_HANDLE_PTR phObject)
{
    API_SESSION_AUDITED(hSession);
    if (!TEMPLATE_OK(pTemplate, ulCount) || phObject == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_create_object(s, pTemplate, ulCount, phObject));
}

CK_RV C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                   CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
    API_SESSION_AUDITED(hSession);
    if (!TEMPLATE_OK(pTemplate, ulCount) || phNewObject == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_copy_object(s, hObject, pTemplate, ulCount, phNewObject));
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
    /* A session object (a DEK of one record) is recorded like the data
     * operations it served, aggregated; a token object one by one. */
    API_SESSION_AUDIT(hSession, __func__, (hObject & SESSION_OBJECT_BIT) ? AUD_DATA : AUD_ALWAYS);
    API_RETURN(core_destroy_object(s, hObject));
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
    API_SESSION(hSession);
    if (pulSize == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_get_object_size(s, hObject, pulSize));
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    API_SESSION(hSession);
    if (!TEMPLATE_OK(pTemplate, ulCount))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_get_attributes(s, hObject, pTemplate, ulCount));
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                          CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    API_SESSION_AUDITED(hSession);
    if (!TEMPLATE_OK(pTemplate, ulCount))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_set_attributes(s, hObject, pTemplate, ulCount));
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
    API_SESSION(hSession);
    if (!TEMPLATE_OK(pTemplate, ulCount))
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_find_init(s, pTemplate, ulCount));
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                    CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
    API_SESSION(hSession);
    if ((phObject == NULL && ulMaxObjectCount > 0) || pulObjectCount == NULL)
        API_RETURN(CKR_ARGUMENTS_BAD);
    API_RETURN(core_find(s, phObject, ulMaxObjectCount, pulObjectCount));
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
    API_SESSION(hSession);
    API_RETURN(core_find_final(s));
}
