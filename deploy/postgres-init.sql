-- Airflow's metadata database beside the application's (compose mounts this into
-- /docker-entrypoint-initdb.d; the local run creates it in stack/run.py).
CREATE DATABASE airflow;
