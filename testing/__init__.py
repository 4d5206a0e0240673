"""Test support shared by the test trees (backend/tests, airflow/tests)."""
