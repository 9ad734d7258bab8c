//! fleet's pagination: pages of `wire::PAGE_SIZE` items of a sorted list, addressed by the
//! `nextPageToken` query parameter (`wire::PageToken`).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::wire::{PAGE_SIZE, PageToken, param};

use super::ApiError;
use super::request::Params;

/// The page a request asks for: the first without a token.
pub fn requested(params: &Params) -> Result<PageToken, ApiError> {
    let Some(raw) = params.only(param::NEXT_PAGE_TOKEN)? else {
        return Ok(PageToken::FIRST);
    };
    let bad = |why: &str| ApiError::BadParameter {
        name: param::NEXT_PAGE_TOKEN,
        value: raw.to_owned(),
        why: why.to_owned(),
    };
    let token = PageToken::decode(raw).map_err(|_| bad("not a page token this API issued"))?;
    if token.limit != PAGE_SIZE {
        return Err(bad(&format!("its page size must be {PAGE_SIZE}")));
    }
    Ok(token)
}

/// The items of page `token` and the token of the next page, empty when no item follows.
pub fn page<T: Clone>(items: &[T], token: PageToken) -> (Vec<T>, String) {
    let range = token.range();
    let total = items.len();
    if range.start >= total {
        return (Vec::new(), String::new());
    }
    let next = if range.end < total {
        token.next().encode()
    } else {
        String::new()
    };
    (items[range.start..range.end.min(total)].to_vec(), next)
}

/// A whole list as last built for a page, with the etcd revision it was read at and what it
/// was built for (its filters). fleet's page token is a page number, so each page of a list
/// needs the whole list: a client paging through 10,000 items would have the server read and
/// build everything 100 times. While etcd's revision stays the same, the next pages come from
/// this copy; after any change the list is built afresh, so a page never shows an older
/// cluster than a read of etcd would. Dropped once its last page is served.
pub struct ListCache<T>(Arc<Mutex<Option<Built<T>>>>);

struct Built<T> {
    revision: i64,
    key: String,
    items: Vec<T>,
}

impl<T> Clone for ListCache<T> {
    fn clone(&self) -> Self {
        ListCache(self.0.clone())
    }
}

impl<T> Default for ListCache<T> {
    fn default() -> Self {
        ListCache(Arc::new(Mutex::new(None)))
    }
}

impl<T: Clone> ListCache<T> {
    /// Page `token` of the list for `key`. The first page starts a listing: `build` makes the
    /// list and says the etcd revision it read at. A later page is cut from the copy when
    /// etcd's revision (from `revision`, one small read) is still the copy's; otherwise the
    /// list is built afresh. One list is built at a time: the next pages of a listing wait
    /// for it rather than build again.
    pub async fn page<E, R, B>(
        &self,
        key: String,
        token: PageToken,
        revision: R,
        build: B,
    ) -> Result<(Vec<T>, String), E>
    where
        R: Future<Output = Result<i64, E>>,
        B: Future<Output = Result<(i64, Vec<T>), E>>,
    {
        let mut cache = self.0.lock().await;
        let kept = match cache.take() {
            Some(b) if token != PageToken::FIRST && b.key == key => {
                let now = revision.await?;
                (b.revision == now).then_some((b.revision, b.items))
            }
            _ => None,
        };
        let (built_at, items) = match kept {
            Some(kept) => kept,
            None => build.await?,
        };
        let (items_of_page, next) = page(&items, token);
        if !next.is_empty() {
            *cache = Some(Built {
                revision: built_at,
                key,
                items,
            });
        }
        Ok((items_of_page, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(page: u16) -> PageToken {
        PageToken {
            limit: PAGE_SIZE,
            page,
        }
    }

    #[test]
    fn pages_cut_a_list_and_say_when_more_follows() {
        let items: Vec<u32> = (0..250).collect();
        let (first, next) = page(&items, PageToken::FIRST);
        assert_eq!(first, (0..100).collect::<Vec<_>>());
        assert_eq!(next, token(2).encode());
        let (third, next) = page(&items, token(3));
        assert_eq!(third, (200..250).collect::<Vec<_>>());
        assert_eq!(next, "");
        assert_eq!(page(&items, token(4)), (vec![], String::new()));
        // Exactly full: no token pointing at an empty page.
        let (full, next) = page(&(0..100).collect::<Vec<u32>>(), PageToken::FIRST);
        assert_eq!(full.len(), 100);
        assert_eq!(next, "");
        assert_eq!(
            page(&Vec::<u32>::new(), PageToken::FIRST),
            (vec![], String::new())
        );
    }

    #[test]
    fn tokens_of_another_page_size_or_garbage_are_refused_naming_the_value() {
        let params = |q: &str| Params::from_uri(&format!("/?{q}").parse().unwrap()).unwrap();
        assert_eq!(requested(&params("alt=json")).unwrap(), PageToken::FIRST);
        assert_eq!(
            requested(&params("nextPageToken=ZAACAA%3D%3D")).unwrap(),
            token(2)
        );
        let small = PageToken { limit: 10, page: 2 }.encode();
        for (query, message) in [
            (
                "nextPageToken=nope".to_owned(),
                "invalid value `nope` of query parameter `nextPageToken`: not a page token this API issued",
            ),
            (
                format!("nextPageToken={small}"),
                "invalid value `CgACAA==` of query parameter `nextPageToken`: its page size must be 100",
            ),
            (
                "nextPageToken=a&nextPageToken=b".to_owned(),
                "query parameter `nextPageToken` is given more than once",
            ),
        ] {
            assert_eq!(
                requested(&params(&query)).unwrap_err().to_string(),
                message,
                "{query}"
            );
        }
    }

    #[tokio::test]
    async fn a_listing_is_built_once_for_its_pages_and_again_after_any_change() {
        use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};
        let cache: ListCache<u32> = ListCache::default();
        let builds = AtomicUsize::new(0);
        let etcd_revision = AtomicI64::new(7);
        let page_of = |key: &str, token: PageToken| {
            let (builds, etcd_revision) = (&builds, &etcd_revision);
            let key = key.to_owned();
            let cache = cache.clone();
            async move {
                let revision = async { Ok::<_, ()>(etcd_revision.load(SeqCst)) };
                let build = async {
                    builds.fetch_add(1, SeqCst);
                    Ok::<_, ()>((etcd_revision.load(SeqCst), (0..250).collect::<Vec<u32>>()))
                };
                cache.page(key, token, revision, build).await.unwrap()
            }
        };
        let built = || builds.load(SeqCst);
        let (first, _) = page_of("", PageToken::FIRST).await;
        assert_eq!(first.len(), 100);
        let (second, _) = page_of("", token(2)).await;
        assert_eq!(second, (100..200).collect::<Vec<u32>>());
        assert_eq!(
            built(),
            1,
            "the second page comes from the first page's list"
        );
        page_of("", PageToken::FIRST).await;
        assert_eq!(built(), 2, "a first page starts a listing afresh");
        etcd_revision.store(8, SeqCst);
        page_of("", token(2)).await;
        assert_eq!(built(), 3, "a new revision builds the list again");
        page_of("", token(3)).await;
        assert_eq!(built(), 3, "the same revision: from the copy");
        page_of("", token(2)).await;
        assert_eq!(built(), 4, "the last page served dropped the copy");
        page_of("other filter", token(2)).await;
        assert_eq!(built(), 5, "another list's pages are not this one's");
    }
}
