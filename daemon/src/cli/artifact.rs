//! `mgsctl artifact`: firmware artifacts read here, no daemon needed.

use super::{open_image, Cli, Failure};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub(super) enum ArtifactCmd {
    /// What a Hubris build archive holds: its image header and caboose,
    /// aux flash (and whether its CHCK verifies), image name, signature
    /// data, warnings.
    Inspect {
        /// The archive (zip).
        file: PathBuf,
    },
}

pub(super) fn run(cli: &Cli, cmd: &ArtifactCmd) -> Result<(), Failure> {
    let ArtifactCmd::Inspect { file } = cmd;
    let v = inspect(file)?;
    if cli.json {
        println!("{v}");
    } else {
        super::print::value(&v, 0);
    }
    Ok(())
}

/// What the reader sees in an archive.
fn inspect(path: &Path) -> Result<Value, Failure> {
    let file = open_image(path)?;
    let archive = artifacts::HubrisArchive::read(std::io::BufReader::new(file))
        .map_err(|e| Failure(5, format!("{}: {e}", path.display())))?;
    let caboose = archive.caboose();
    let key = |tag: artifacts::Tag| -> Value {
        match caboose.map(|c| c.get(tag)) {
            None | Some(Ok(None)) => Value::Null,
            Some(Ok(Some(v))) => Value::from(String::from_utf8_lossy(v).into_owned()),
            Some(Err(e)) => json!({ "error": e.to_string() }),
        }
    };
    let header = &archive.info.header;
    Ok(json!({
        "file": path.display().to_string(),
        "archive_version": archive.archive_version,
        "app": { "name": archive.app.name, "board": archive.app.board, "chip": archive.app.chip },
        "chip": format!("{:?}", archive.chip).to_lowercase(),
        "image_name": archive.image_name,
        "git_rev": archive.git_rev,
        "image": {
            "base": format!("{:#010x}", archive.image_base),
            "bytes": archive.image.len(),
            "header_offset": format!("{:#x}", header.offset),
            "header_magic": format!("{:?}", header.magic).to_lowercase(),
            "total_image_len": header.total_image_len,
            "signed_data_after_caboose": archive.info.signed_data_after_caboose,
        },
        "caboose": caboose.map(|c| json!({
            "bytes": c.payload().len() + 8,
            "empty": c.is_empty(),
            "NAME": key(artifacts::Tag::NAME),
            "VERS": key(artifacts::Tag::VERS),
            "GITC": key(artifacts::Tag::GITC),
            "BORD": key(artifacts::Tag::BORD),
            "SIGN": key(artifacts::Tag::SIGN),
        })),
        "aux_flash": archive.aux_flash.as_ref().map(|a| json!({
            "bytes": a.aux_flash_size(),
            "chck": actors::types::hex(&a.chck()),
            "chck_verified": true,
            "blobs": a.blobs().map(|(t, b)| json!({ "tag": t.to_string(), "bytes": b.len() })).collect::<Vec<_>>(),
        })),
        "members": archive.members,
        "warnings": archive.warnings.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>(),
    }))
}
