//! Protected tables: the guard trigger that decides every row change
//! (guard), the row filter (filter), the DDL guard that keeps protection
//! from being weakened (ddl), and the change digest an assertion binds
//! (change).

pub mod change;
pub mod ddl;
pub mod filter;
pub mod guard;
