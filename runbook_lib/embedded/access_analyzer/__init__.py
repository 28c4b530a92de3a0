"""IAM Access Analyzer's policy checks in the embedded backend, laid out as moto lays out a service.

moto does not serve Access Analyzer, so the backend answers the three calls the runbook makes,
in AWS's request and answer shapes (botocore's model of the service):

    urls.py           which requests are Access Analyzer calls (signed for `access-analyzer`), which operation
    responses.py      the wire: rest-json requests checked on botocore's model, JSON answers and errors
    validation.py     ValidatePolicy: AWS's checks the runbook's policies can meet, parliament behind some
    access_checks.py  CheckNoNewAccess and CheckAccessNotGranted, decided by the backend's own evaluator
    locations.py      where each element of a policy document stands in its text (findings' locations)
    exceptions.py     the API's errors

Nothing is imported here, so each module can be imported on its own.
"""

from __future__ import annotations

__all__: list[str] = []
