/*
 * mandant install script.
 *
 * Built by concatenating the files of sql/mandant/ in name order; each
 * file is one topic.  Objects live in schema mandant (fixed by
 * mandant.control).  Every SECURITY DEFINER function sets search_path =
 * pg_catalog, pg_temp and qualifies every name.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION mandant CASCADE" to load this file. \quit
