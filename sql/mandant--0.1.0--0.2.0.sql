/*
 * mandant 0.1.0 -> 0.2.0
 *
 * Every change of the install script (sql/mandant/) between the two
 * releases, in the order the install script makes it.  test/shell/upgrade.sh
 * proves that a database updated with this script has the same objects,
 * definitions, rights and comments as a fresh installation of 0.2.0.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mandant UPDATE TO '0.2.0'" to load this file. \quit
