"""HTML pages of the feed. Each POST acts through feed.services and redirects (POST/redirect/GET);
sent by htmx (the HX-Request header), like, follow, comment and post answer with the updated
fragment instead (templates/feed/_*.html, the same partials the pages include), so the page stays."""
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

import notifier
from config import login_guard
from config.throttles import PasswordResetThrottle, SignupThrottle, WriteThrottle, throttle_page
from notifier.services import open_post

from . import emails, queries, search, services
from .forms import CommentForm, PostForm, ProfileForm, SignupForm
from .images import ImageRejected
from .models import Comment, Follow, Post
from .pagination import keyset_page


def _safe_next(request) -> str:
    """?next= (posted or in the query) when it is a safe local URL, else ""."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    return target if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()) else ""


def _back(request, fallback: str):
    """Redirect to ?next= when it is a safe local URL, else to fallback."""
    return redirect(_safe_next(request) or fallback)


def _htmx(request) -> bool:
    """Whether htmx sent this request (it then swaps in a fragment, it does not navigate)."""
    return request.headers.get("HX-Request") == "true"


def _act(request, action, *args) -> bool:
    """Run a service call for a page: bad input becomes a message, unknown objects a 404."""
    try:
        action(*args)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return False
    except ObjectDoesNotExist:
        raise Http404("Not found.") from None
    return True


def _with_picture(form, store):
    """Run `store(picture)`, a service call that stores the form's picture (its file, or its direct
    upload read back from storage, forms.DirectUploadForm): its result, or None with the refusal
    (not an image, too large, damaged, no such upload) as the picture field's error, nothing stored."""
    try:
        with form.picture() as picture:
            return store(picture)
    except ImageRejected as exc:
        form.add_error(form.picture_field, str(exc))
        return None


@throttle_page(WriteThrottle)
def home(request):
    """The home feed; for visitors who are not logged in, the landing page."""
    if not request.user.is_authenticated:
        if request.method == "POST":
            return redirect_to_login(request.get_full_path())
        return render(request, "feed/landing.html")
    form = PostForm(request.POST or None, request.FILES or None, uploader=request.user)
    post = None
    if request.method == "POST" and form.is_valid():
        post = _with_picture(form, lambda picture: services.create_post(
            request.user, form.cleaned_data["text"], image=picture, image_alt=form.cleaned_data.get("image_alt", "")))
    if post is not None:
        if _htmx(request):
            new_post = queries.posts_for(request.user).get(pk=post.pk)
            return render(request, "feed/_composer.html", {"form": PostForm(uploader=request.user), "new_post": new_post})
        messages.success(request, "Posted.")
        return redirect("home")
    if request.method == "POST" and _htmx(request):  # errors: 200, so htmx swaps the form in
        return render(request, "feed/_composer.html", {"form": form})
    page = keyset_page(queries.home_feed(request.user), request.GET.get("before"))
    return render(request, "feed/home.html", {"form": form, "page": page})


def profile(request, username):
    try:
        user = services.get_user(username)
    except ObjectDoesNotExist:
        raise Http404("No such user.") from None
    page = keyset_page(queries.posts_for(request.user, user.posts.all()), request.GET.get("before"))
    context = {
        "profile_user": user,
        "page": page,
        "is_following": queries.is_following(request.user, user),
        **queries.profile_stats(user),
    }
    return render(request, "feed/profile.html", context)


def _people(request, username, direction):
    try:
        user = services.get_user(username)
    except ObjectDoesNotExist:
        raise Http404("No such user.") from None
    if direction == "followers":
        follows = Follow.objects.filter(followee=user).select_related("follower")
    else:
        follows = Follow.objects.filter(follower=user).select_related("followee")
    page = keyset_page(follows, request.GET.get("before"), size=50)
    people = [f.follower if direction == "followers" else f.followee for f in page]
    return render(request, "feed/people.html", {
        "profile_user": user, "people": people, "page": page, "direction": direction,
    })


def followers(request, username):
    return _people(request, username, "followers")


def following(request, username):
    return _people(request, username, "following")


@login_required
@require_POST
@throttle_page(WriteThrottle)
def follow(request, username):
    if request.POST.get("action") == "unfollow":
        _act(request, services.unfollow, request.user, username)
    else:
        _act(request, services.follow, request.user, username)
    if _htmx(request) and request.POST.get("as") == "person":  # a line of search results or who to follow
        return render(request, "feed/_person.html", {
            "person": queries.person_for(request.user, services.get_user(username)), "next": _safe_next(request) or "",
        })
    if _htmx(request) and request.POST.get("as") == "button":  # a "Follow back" among notifications
        user = services.get_user(username)
        return render(request, "feed/_follow_button.html", {
            "profile_user": user, "is_following": queries.is_following(request.user, user), "compact": True,
            "next": _safe_next(request),
        })
    if _htmx(request):
        user = services.get_user(username)
        return render(request, "feed/_follow_button.html", {
            "profile_user": user, "is_following": queries.is_following(request.user, user), "oob": True,
            **queries.profile_stats(user),
        })
    return _back(request, f"/u/{username}/")


@throttle_page(WriteThrottle)
def post_detail(request, pk):
    try:
        post = queries.posts_for(request.user).get(pk=pk)
    except Post.DoesNotExist:
        raise Http404("This post does not exist (it may have been deleted).") from None
    form = CommentForm(request.POST or None)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"/accounts/login/?next={post.get_absolute_url()}")
        if request.POST.get("parent"):
            return _reply(request, post, form)
        if form.is_valid():
            comment = services.add_comment(request.user, post.pk, form.cleaned_data["text"])
            if _htmx(request):
                post = queries.posts_for(request.user).get(pk=post.pk)  # its new comment count
                return render(request, "feed/_comment_form.html", {
                    "post": post, "form": CommentForm(), "new_comment": queries.comments_for(post).get(pk=comment.pk),
                })
            return redirect(comment.get_absolute_url())
        if _htmx(request):  # errors: 200, so htmx swaps the form in
            return render(request, "feed/_comment_form.html", {"post": post, "form": form})
    if request.method == "GET" and request.user.is_authenticated:
        # Reading the post is reading what one was told about it: its notifications go read and
        # the badge clears, here and in every open tab (before rendering: the page shows it).
        open_post(request.user, post.pk)
    comments = queries.threads(queries.comments_for(post))
    muted = request.user.is_authenticated and notifier.muted(request.user, post.pk)
    return render(request, "feed/post_detail.html", {"post": post, "comments": comments, "form": form, "muted": muted,
                                                     "following": services.follows_post(request.user, post.pk)})


def _reply(request, post, form):
    """A reply form's POST (templates/feed/_reply_form.html). Without htmx: to the new reply, or
    back to the comment with the error as a message; with htmx: the form again (cleared, or with
    its error and text) and the reply appended to its thread out of band."""
    comment, error = None, ""
    if form.is_valid():
        try:
            comment = services.add_comment(request.user, post.pk, form.cleaned_data["text"], form.cleaned_data["parent"])
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = " ".join(message for messages_ in form.errors.values() for message in messages_)
    parent = form.cleaned_data.get("parent")
    if not _htmx(request):
        if comment is not None:
            return redirect(comment.get_absolute_url())
        messages.error(request, error)
        return redirect(post.get_absolute_url() + (f"#comment-{parent}" if parent else ""))
    replied_to = Comment.objects.select_related("author").filter(pk=parent, post=post).first() if parent else None
    if replied_to is None:  # not a comment of this post (or deleted meanwhile)
        return HttpResponseBadRequest(error or "That comment is gone.", content_type="text/plain")
    context = {"replied_to": replied_to, "reply_error": error, "reply_text": request.POST.get("text", "") if error else ""}
    if comment is not None:
        context["post"] = queries.posts_for(request.user).get(pk=post.pk)  # its new comment count
        context["new_reply"] = queries.comments_for(post).get(pk=comment.pk)
    return render(request, "feed/_reply_form.html", context)


@login_required
@require_POST
@throttle_page(WriteThrottle)
def post_follow(request, pk):
    """Follow (or, with action=unfollow, unfollow) this post's new comments."""
    following = request.POST.get("action") != "unfollow"
    done = _act(request, services.follow_post, request.user, pk, following)
    if _htmx(request):
        return render(request, "feed/_post_follow_form.html", {
            "post": {"pk": pk}, "following": services.follows_post(request.user, pk), "changed": done,
        })
    if done:
        messages.success(request, "Following: you will be told of new comments on this post." if following
                         else "Unfollowed: you won't be told of new comments on this post.")
    return redirect("post-detail", pk=pk)


def _edit(request, writing, kind: str, edit, form_class):
    """Edit a post or comment: with htmx the form in place of its text (and the new text, or the
    text again on Cancel, in place of the form); without, a page of its own and back to it."""
    if writing.author_id != request.user.pk:
        raise PermissionDenied(f"You can only edit your own {kind}s.")
    edit_url = reverse(f"{kind}-edit", args=[writing.pk])
    context = {"writing": writing, "kind": kind, "edit_url": edit_url}
    if request.method == "GET" and request.GET.get("cancel") and _htmx(request):
        return render(request, "feed/_writing_text.html", context)
    form = form_class(request.POST or None, initial={"text": writing.text}, prefix=f"{kind}-{writing.pk}")
    if request.method == "POST" and form.is_valid():
        try:
            writing = edit(request.user, writing.pk, form.cleaned_data["text"])
        except ValidationError as exc:
            form.add_error("text", exc)
        except ObjectDoesNotExist:
            raise Http404("It was deleted.") from None
        else:
            if _htmx(request):
                return render(request, "feed/_writing_text.html", {**context, "writing": writing})
            messages.success(request, "Saved.")
            return redirect(writing.get_absolute_url())
    context["form"] = form
    return render(request, "feed/_edit_form.html" if _htmx(request) else "feed/edit.html", context)


@login_required
@throttle_page(WriteThrottle)
def post_edit(request, pk):
    return _edit(request, get_object_or_404(Post, pk=pk), "post", services.edit_post, PostForm)


@login_required
@throttle_page(WriteThrottle)
def comment_edit(request, pk):
    return _edit(request, get_object_or_404(Comment, pk=pk), "comment", services.edit_comment, CommentForm)


@login_required
@require_POST
@throttle_page(WriteThrottle)
def post_delete(request, pk):
    if _act(request, services.delete_post, request.user, pk):
        messages.success(request, "Post deleted.")
    return redirect("home")


@login_required
@require_POST
@throttle_page(WriteThrottle)
def comment_delete(request, pk):
    post_id = request.POST.get("post")
    deleted = _act(request, services.delete_comment, request.user, pk)
    if _htmx(request) and deleted and post_id and post_id.isdigit():
        # The comment's line goes (an empty swap); the post's comment count follows out of band.
        post = queries.posts_for(request.user).filter(pk=post_id).first()
        return render(request, "feed/_comment_count.html", {"post": post, "oob": True}) if post else HttpResponse("")
    if deleted:
        messages.success(request, "Comment deleted.")
    return redirect("post-detail", pk=post_id) if post_id and post_id.isdigit() else redirect("home")


@login_required
@require_POST
@throttle_page(WriteThrottle)
def post_mute(request, pk):
    """Mute (or, with action=unmute, unmute) the user's notifications about this post."""
    muted = request.POST.get("action") != "unmute"
    done = _act(request, services.mute_post, request.user, pk, muted)
    if _htmx(request):
        return render(request, "feed/_mute_form.html", {
            "post": {"pk": pk}, "muted": notifier.muted(request.user, pk), "changed": done,
        })
    if done:
        messages.success(request, "Muted: you won't be notified about this post." if muted
                         else "Unmuted: you will be notified about this post again.")
    return redirect("post-detail", pk=pk)


@login_required
@require_POST
@throttle_page(WriteThrottle)
def like(request, pk):
    if request.POST.get("action") == "unlike":
        _act(request, services.unlike, request.user, pk)
    else:
        _act(request, services.like, request.user, pk)
    if _htmx(request):
        post = queries.posts_for(request.user).filter(pk=pk).first()
        if post is None:
            raise Http404("This post does not exist (it may have been deleted).")
        return render(request, "feed/_like_button.html", {"post": post, "next_url": _safe_next(request)})
    return _back(request, f"/posts/{pk}/")


@throttle_page(SignupThrottle)
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to Herald, {user.name}!")
        if user.email and not emails.send_verification(user):
            messages.info(request, f"We sent a link to {user.email}: open it to confirm the address.")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def edit_profile(request):
    form = ProfileForm(request.POST or None, request.FILES or None, instance=request.user, uploader=request.user,
                       request=request)
    if request.method == "POST" and form.is_valid():
        if form.has_picture():
            _with_picture(form, lambda picture: services.set_avatar(request.user, picture))
        elif form.cleaned_data.get("remove_avatar"):
            services.remove_avatar(request.user)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        emails.tell_old_address(form.stored_email, form.stored_verified, user)
        messages.success(request, "Profile saved.")
        if "email" in form.changed_data and user.email:
            _verification_sent(request, user)
        return redirect("profile", username=request.user.username)
    return render(request, "feed/edit_profile.html", {"form": form})


def _verification_sent(request, user) -> int:
    """Send the verification link and say so (or say when another may be sent)."""
    wait = emails.send_verification(user)
    if wait:
        messages.error(request, f"Too many confirmation emails for now: try again in {-(-wait // 60)} minutes.")
    else:
        messages.info(request, f"We sent a link to {user.email}: open it to confirm the address.")
    return wait


@login_required
@require_POST
def email_verify_resend(request):
    """"Send the link again" on the profile settings page; at most EMAIL_VERIFY_PER_HOUR an hour
    (past that: 429 with Retry-After)."""
    user = request.user
    if user.email and not user.email_verified_at:
        wait = _verification_sent(request, user)
        if wait:
            response = render(request, "429.html", {"wait": wait}, status=429)
            response["Retry-After"] = str(wait)
            return response
    return redirect("edit-profile")


def email_verify(request, token):
    """The link from the verification mail. A GET verifies: it only proves the mail was read
    (mail scanners that open links can do no more than the reader could), needs no log-in, and
    does nothing unless the link names the account's current address."""
    try:
        user = emails.verify(token)
    except emails.BadLink as exc:
        return render(request, "registration/email_verify.html", {"error": str(exc)}, status=400)
    return render(request, "registration/email_verify.html", {"verified_email": user.email})


class PasswordResetView(auth_views.PasswordResetView):
    """"Forgot password": the same answer whether or not the address belongs to anyone; a mail only
    to a verified address of an active account (feed.emails.PasswordResetForm)."""

    form_class = emails.PasswordResetForm
    template_name = "registration/password_reset_form.html"
    success_url = reverse_lazy("password-reset-sent")


password_reset = throttle_page(PasswordResetThrottle)(PasswordResetView.as_view())
password_reset_sent = auth_views.PasswordResetDoneView.as_view(template_name="registration/password_reset_done.html")
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="registration/password_reset_confirm.html", success_url=reverse_lazy("password-reset-complete"))
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="registration/password_reset_complete.html")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's own password change, on the site's pages. What the old password opened ends with it
    (feed.models.User.save): the account's API tokens, its other log-in sessions and its live
    connections; this page's session stays logged in. Attempts count against the write limit, so
    the form is no way to guess the current password."""

    template_name = "registration/password_change.html"

    def get_success_url(self):
        return reverse("profile", kwargs={"username": self.request.user.username})

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(
            self.request,
            "Password changed. You are logged out everywhere else, and API tokens made with the old password "
            "no longer work.",
        )
        return response


password_change = login_required(throttle_page(WriteThrottle)(PasswordChangeView.as_view()))


class LoginView(auth_views.LoginView):
    """Django's log-in page with the failed log-in limits of config.login_guard (shared with
    POST /api/token/): past them, 429 with Retry-After and the form saying when to try again."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = login_guard.begin(request, username)
        if wait:
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, login_guard.MESSAGE.format(wait=wait))
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        login_guard.succeeded(self.request, form.get_user().get_username())
        return super().form_valid(form)


class LogoutView(auth_views.LogoutView):
    """POST logs out and says so on the log-in page. A GET (a typed or bookmarked URL) does not log
    out: it shows a page with the log-out button (a POST with the CSRF token), or, logged out
    already, goes to the log-in page."""

    http_method_names = ["get", "post", "options"]
    template_name = "registration/logout.html"

    def get(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect("login")
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        was_logged_in = request.user.is_authenticated
        response = super().post(request, *args, **kwargs)
        if was_logged_in:
            messages.success(request, "You have been logged out.")
        # Nothing of the session may stay in the browser: the live credentials a page hands to the
        # next one in sessionStorage would let whoever sits at the tab read the user's pushes.
        # (live.js also drops them itself when the log-out form is sent.)
        response["Clear-Site-Data"] = '"storage"'
        return response


@login_required
def people_search(request):
    """Search (`?q=`): the People tab (`?type=people`, the default, with follow buttons; who to follow
    below when nobody is found) or the Posts tab (`?type=posts`), a page at a time (`?cursor=`, from
    the page's "More results" link; a malformed one means the first page), by feed.search."""
    q = request.GET.get("q", "").strip()
    kind = "posts" if request.GET.get("type") == "posts" else "people"
    page = None
    if len(q) > search.MAX_LENGTH:
        messages.error(request, f"Search for at most {search.MAX_LENGTH} characters.")
    elif q:
        try:
            after = search.decode_cursor(request.GET.get("cursor"))
        except ValueError:
            after = None
        page = (search.posts if kind == "posts" else search.people)(request.user, q, after=after)
    return render(request, "feed/search.html", {"q": q, "kind": kind, "page": page})


NEWER_LIMIT = 50  # cards at most per GET /feed/newer/ (the banner asks again for more)


@login_required
def home_newer(request):
    """The home feed's cards newer than ?after=<post id>, newest first, as HTML (for live.js's
    "N new posts" banner, which inserts them at the top of the open home page)."""
    try:
        after = max(int(request.GET.get("after", "")), 0)
    except ValueError:
        after = None
    if after is None:
        return HttpResponseBadRequest("?after= must be a post id.", content_type="text/plain")
    posts = list(queries.home_feed(request.user).filter(pk__gt=after).order_by("-id")[:NEWER_LIMIT])
    # The cards' forms send the user back to the home page, not to this fragment.
    return render(request, "feed/_post_list.html", {"posts": posts, "next_url": reverse("home")})

