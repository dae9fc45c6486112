"""Old import path of `edgepoc.models.paper.student`, kept for tests/chain (another owner's files)."""

from edgepoc.models.paper.student import StudentModel, student_config  # noqa: F401
