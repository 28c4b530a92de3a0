"""S3 Batch Operations jobs in the embedded backend, laid out as moto lays out a service.

    urls.py         which S3 Control paths and methods are job calls, and which operation each is
    responses.py    the wire: rest-xml requests parsed and checked on botocore's model, XML answers
    validation.py   the CreateJob rules botocore's model cannot express
    models.py       the job store and each job's state, the API's behaviour
    runner.py       the worker that drives one job through AWS's statuses and runs its tasks
    exceptions.py   S3 Control errors and the failure that ends a job

Nothing is imported here, so `exceptions` can be imported on its own by the modules the runner uses.
"""

from __future__ import annotations

__all__: list[str] = []
