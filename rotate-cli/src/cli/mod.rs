//! The command line, declared once: parsing, `--help`, completions and the
//! man page all come from these types.

mod command;
mod common;
mod keyset;
mod rotation;
mod s3;

pub(crate) use self::command::{Cli, Command, DemoArgs, KeysCommand, ManArgs};
pub(crate) use self::common::{DecryptArgs, DiscoveryArgs, EncryptArgs, FilesArgs, InspectArgs, KmsArgs, RetryMode};
pub(crate) use self::keyset::{KeysetCommand, RecordArgs};
pub(crate) use self::rotation::{
    InventoryArgs, ItemKind, ReencryptArgs, RewrapArgs, RollbackArgs, ScanArgs, TargetArgs, VerifyCommand,
};
pub(crate) use self::s3::{S3Command, SseMethodArg, SseRotateArgs};
