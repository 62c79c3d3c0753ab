//! Why a data mover failed: the error that ends up in its termination message.

#[derive(Debug, thiserror::Error)]
pub enum DataMoverError {
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    #[error(
        "BackupStorageLocation {name} (named by {named_by} spec.backupStorageLocation) not found"
    )]
    LocationNotFound { name: String, named_by: String },
    #[error("BackupStorageLocation {name}: {message}")]
    Location { name: String, message: String },
    #[error("secret {secret}: {message}")]
    Secret { secret: String, message: String },
    #[error("{0}")]
    Kube(String),
    #[error(
        "wrong password: no key in {location} opens with the password in secret {secret} (key {key}); \
         put there the password the repository was created with"
    )]
    WrongSecretPassword {
        location: String,
        secret: String,
        key: &'static str,
    },
    #[error(transparent)]
    Repo(#[from] ferry_repo::RepoError),
}

pub(crate) fn kube_err(what: &str, err: kube::Error) -> DataMoverError {
    DataMoverError::Kube(format!("{what}: {err}"))
}
