-- Run once by the postgres image on an empty data volume (docker-compose.yml): the structure store gets
-- a database of its own beside the Prefect server's (POSTGRES_DB, created by the image).
CREATE DATABASE structures;
